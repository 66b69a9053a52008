import Fastify from 'fastify';
import { request } from 'undici';
import type { AlarmNotification, PresenceSettings } from '../../src/activities/presence';
import type { DeviceRecord } from '../../src/domain/schemas/device';
import type { History } from '../../src/store';
import { createWebhookAdapter, type WebhookAdapter, type WebhookAdapterOptions } from '../../src/webhook/adapter';
import type { RelayOptions } from '../../src/webhook/relay';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from './device-ops-env';

/**
 * The whole presence path for one test file, all real: the broker's rule engine posts EMQX events
 * to a webhook adapter (port 0), which stores them in MongoDB and signals device workflows run by
 * the file's worker; alarm notifications go to a receiver that records them.
 */
export const WEBHOOK_TOKEN = 'test-webhook-token-0123456789';

export interface PresenceTestEnv extends DeviceOpsTestEnv {
  adapter: WebhookAdapter;
  adapterUrl: string;
  /** Alarm notifications received so far, in arrival order. */
  notifications: AlarmNotification[];
  /** Another adapter on the same database (e.g. with a broken Temporal client); closed with the env. */
  extraAdapter(options: Partial<WebhookAdapterOptions>): Promise<{ adapter: WebhookAdapter; url: string }>;
}

/** Short defaults so unprovisioned clients behave predictably; tests give devices their own policy. */
export const TEST_PRESENCE_DEFAULTS: PresenceSettings['defaults'] = { graceMs: 60_000, escalationMs: [60_000], flapThreshold: 50, flapWindowMs: 60_000 };

/**
 * Tests watch one device's disconnect take effect, one after another: a short hold keeps them
 * quick. A test of what the hold saves passes the production default (`relay`).
 */
const TEST_DISCONNECT_HOLD_MS = 500;

export async function startPresenceEnv(
  options: { defaults?: PresenceSettings['defaults']; temporalAddress?: string; relay?: Partial<RelayOptions> } = {},
): Promise<PresenceTestEnv> {
  const notifications: AlarmNotification[] = [];
  const receiver = Fastify();
  receiver.post('/alarms', (req, reply) => {
    notifications.push(req.body as AlarmNotification);
    void reply.send({ ok: true });
  });
  await receiver.listen({ host: '127.0.0.1', port: 0 });
  const receiverAddress = receiver.server.address();
  const receiverPort = typeof receiverAddress === 'object' && receiverAddress ? receiverAddress.port : 0;

  const env = await startDeviceOpsEnv({
    presence: { defaults: options.defaults ?? TEST_PRESENCE_DEFAULTS, alarmWebhookUrl: `http://127.0.0.1:${receiverPort}/alarms` },
    ...(options.temporalAddress ? { temporalAddress: options.temporalAddress } : {}),
  });
  const adapters: WebhookAdapter[] = [];
  const extraAdapter = async (overrides: Partial<WebhookAdapterOptions>): Promise<{ adapter: WebhookAdapter; url: string }> => {
    const adapter = createWebhookAdapter({
      history: env.history,
      temporal: env.temporal,
      taskQueue: env.taskQueue,
      token: WEBHOOK_TOKEN,
      relay: { sweepIntervalMs: 200, bucketMs: 1_000, adoptAfterMs: 500, maxBackoffMs: 1_000, disconnectHoldMs: TEST_DISCONNECT_HOLD_MS, ...options.relay },
      campaignRefreshMs: 200,
      // Replies a stopped adapter left unapplied are taken over quickly (docs/jobs.md).
      replyApplier: { sweepEveryMs: 1_000, sweepAfterMs: 500 },
      ...overrides,
    });
    adapters.push(adapter);
    const port = await adapter.listen('127.0.0.1', 0);
    return { adapter, url: `http://127.0.0.1:${port}` };
  };
  const main = await extraAdapter({});
  await env.ops.setupEventWebhook({ url: `${main.url}/emqx/events`, token: WEBHOOK_TOKEN });

  return {
    ...env,
    adapter: main.adapter,
    adapterUrl: main.url,
    notifications,
    extraAdapter,
    async close() {
      await Promise.allSettled(adapters.map((a) => a.close()));
      await env.close();
      await receiver.close();
    },
  };
}

/** POSTs a body to an adapter's /emqx/events; returns the status and the parsed answer. */
export async function postEvents(
  baseUrl: string,
  body: unknown,
  headers: Record<string, string> = { authorization: `Bearer ${WEBHOOK_TOKEN}` },
  path: '/emqx/events' | '/emqx/replies' = '/emqx/events',
): Promise<{ status: number; body: unknown }> {
  const res = await request(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.statusCode, body: parsed };
}

/** A client.connected body as EMQX 5 sends it for `SELECT *` (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl, eventmsg_connected). */
export function connectedEvent(clientid: string, connectedAt: number): Record<string, unknown> {
  return {
    username: clientid,
    timestamp: connectedAt + 2,
    sockname: '127.0.0.1:1883',
    receive_maximum: 32,
    proto_ver: 4,
    proto_name: 'MQTT',
    peername: '127.0.0.1:50000',
    node: 'emqx@127.0.0.1',
    mountpoint: 'undefined',
    metadata: { rule_id: 'device_ops_events' },
    keepalive: 60,
    is_bridge: false,
    expiry_interval: 0,
    event: 'client.connected',
    connected_at: connectedAt,
    conn_props: { 'User-Property': {} },
    clientid,
    clean_start: true,
    client_attrs: {},
  };
}

export function disconnectedEvent(clientid: string, connectedAt: number, disconnectedAt: number, reason = 'normal'): Record<string, unknown> {
  return {
    reason,
    clientid,
    username: clientid,
    peername: '127.0.0.1:50000',
    sockname: '127.0.0.1:1883',
    proto_name: 'MQTT',
    proto_ver: 4,
    disconn_props: { 'User-Property': {} },
    disconnected_at: disconnectedAt,
    connected_at: connectedAt,
    client_attrs: {},
    event: 'client.disconnected',
    timestamp: disconnectedAt,
    node: 'emqx@127.0.0.1',
    metadata: { rule_id: 'device_ops_events' },
  };
}

/**
 * Device records for clients registered straight in EMQX (no provisioning workflow): a record is
 * what makes a client a tracked device, with a device workflow and alarms (docs/presence.md).
 */
export async function recordDevices(history: History, clientIds: readonly string[]): Promise<void> {
  const at = new Date().toISOString();
  await history.saveDevices(
    clientIds.map((clientId): DeviceRecord => ({ clientId, username: clientId, acl: [], subscriptions: [], tags: [], status: 'active', provisionedAt: at, updatedAt: at })),
  );
}
