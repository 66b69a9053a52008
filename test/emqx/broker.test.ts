/**
 * EmqxClient against the project's EMQX-compatible dev broker, with a real MQTT client where the
 * behaviour depends on a live session.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../devstack/broker';
import {
  createEmqxClient,
  EmqxConflictError,
  EmqxNotFoundError,
  EmqxUnavailableError,
  isRetryable,
  type EmqxClient,
} from '../../src/emqx';
import { waitFor } from '../harness';
import { connectDevice as connectAs, nextMessage } from '../support/device-ops-env';

const API_KEY = 'k';
const API_SECRET = 's';

let broker: Awaited<ReturnType<typeof startBroker>>;
let emqx: EmqxClient;
const mqttClients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startBroker({ apiKey: API_KEY, apiSecret: API_SECRET });
  emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET, timeoutMs: 5_000 });
});

afterEach(async () => {
  broker.faults.reset();
  await Promise.all(mqttClients.splice(0).map((c) => c.endAsync(true)));
});

afterAll(async () => {
  await emqx?.close();
  await broker?.close();
});

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Creates credentials and connects a device with them. */
async function connectDevice(): Promise<{ clientId: string; client: MqttClient }> {
  const clientId = unique('dev');
  const password = `pw-${randomUUID()}`;
  await emqx.createUser({ user_id: clientId, password });
  const client = await connectAs(broker, clientId, clientId, password);
  mqttClients.push(client);
  return { clientId, client };
}

describe('health', () => {
  it('reports the broker running, without credentials', async () => {
    await expect(emqx.status()).resolves.toMatchObject({ running: true, status: 200 });
  });
});

describe('device credentials', () => {
  it('creates, reads, lists, updates and deletes a user', async () => {
    const userId = unique('user');
    await expect(emqx.createUser({ user_id: userId, password: 'pw-1' })).resolves.toEqual({ user_id: userId, is_superuser: false });
    await expect(emqx.getUser(userId)).resolves.toMatchObject({ user_id: userId, is_superuser: false });
    const page = await emqx.listUsers({ like_user_id: userId });
    expect(page.data.map((u) => u.user_id)).toEqual([userId]);
    expect(page.meta.hasnext).toBe(false);
    await emqx.updateUser(userId, { password: 'pw-2', is_superuser: true });
    await expect(emqx.getUser(userId)).resolves.toMatchObject({ is_superuser: true });
    await expect(emqx.createUser({ user_id: userId, password: 'pw-3' })).rejects.toBeInstanceOf(EmqxConflictError);
    await emqx.deleteUser(userId);
    await expect(emqx.getUser(userId)).resolves.toBeNull();
    await expect(emqx.deleteUser(userId)).rejects.toBeInstanceOf(EmqxNotFoundError);
  });

  it('upserts and deletes idempotently', async () => {
    const userId = unique('user');
    await expect(emqx.upsertUser({ user_id: userId, password: 'pw-1' })).resolves.toBe('created');
    await expect(emqx.upsertUser({ user_id: userId, password: 'pw-2' })).resolves.toBe('updated');
    await expect(emqx.deleteUserIfExists(userId)).resolves.toBe(true);
    await expect(emqx.deleteUserIfExists(userId)).resolves.toBe(false);
  });

  it('imports users and lists them page by page', async () => {
    const prefix = unique('fleet');
    const entries = Array.from({ length: 5 }, (_, i) => ({ user_id: `${prefix}-${i}`, password: `pw-${i}` }));
    // The broker answers with counts, as EMQX 5.8.2+ does.
    expect(await emqx.importUsers('plain', entries)).toEqual({ total: 5, success: 5, override: 0, skipped: 0, failed: 0, countsReported: true });
    const listed = await emqx.listAllUsers({ like_user_id: prefix }, { pageSize: 2 });
    expect(listed.map((u) => u.user_id).sort()).toEqual(entries.map((e) => e.user_id).sort());
    // Importing the same users again overrides them (plain passwords are salted anew).
    expect(await emqx.importUsers('plain', entries)).toMatchObject({ total: 5, success: 0, override: 5, failed: 0, countsReported: true });
  });
});

describe('ACL rules', () => {
  it('puts, gets, replaces and deletes a client’s rules', async () => {
    const clientid = unique('acl');
    const rules = [
      { topic: `devices/${clientid}/cmd`, permission: 'allow' as const, action: 'subscribe' as const },
      { topic: `devices/${clientid}/up`, permission: 'allow' as const, action: 'publish' as const, qos: [0, 1] as (0 | 1)[] },
    ];
    await expect(emqx.getAclRules({ clientid })).resolves.toBeNull();
    await emqx.putAclRules({ clientid }, rules);
    await emqx.putAclRules({ clientid }, rules);
    await expect(emqx.getAclRules({ clientid })).resolves.toMatchObject(rules);
    await emqx.putAclRules({ clientid }, rules.slice(0, 1));
    await expect(emqx.getAclRules({ clientid })).resolves.toHaveLength(1);
    const all = await emqx.listAllAclRules('clients', { like_clientid: clientid });
    expect(all.map((r) => r.clientid)).toEqual([clientid]);
    await expect(emqx.deleteAclRules({ clientid })).resolves.toBe(true);
    await expect(emqx.deleteAclRules({ clientid })).resolves.toBe(false);
    await expect(emqx.getAclRules({ clientid })).resolves.toBeNull();
  });

  it('manages username rules and the rules for everyone', async () => {
    const username = unique('acl-user');
    await emqx.putAclRules({ username }, [{ topic: 'shared/#', permission: 'deny', action: 'publish' }]);
    await expect(emqx.getAclRules({ username })).resolves.toMatchObject([{ topic: 'shared/#', permission: 'deny' }]);
    await expect(emqx.deleteAclRules({ username })).resolves.toBe(true);
    await expect(emqx.getAclRules({ username })).resolves.toBeNull();
    const everyone = [{ topic: 'broadcast/#', permission: 'allow' as const, action: 'subscribe' as const }];
    try {
      await emqx.putAclRules('all', everyone);
      await expect(emqx.getAclRules('all')).resolves.toMatchObject(everyone);
    } finally {
      await emqx.putAclRules('all', []);
    }
    await expect(emqx.getAclRules('all')).resolves.toEqual([]);
    await expect(emqx.clearAllAuthzCache()).resolves.toBeUndefined();
  });
});

describe('live clients', () => {
  it('sees a device connected with its created credentials, and rejects a wrong password', async () => {
    const { clientId } = await connectDevice();
    const info = await waitFor(() => emqx.getClient(clientId), { what: 'the client to appear' });
    expect(info).toMatchObject({ clientid: clientId, username: clientId, connected: true });
    const listed = await emqx.listAllClients({ clientid: [clientId, 'nobody'] });
    expect(listed.map((c) => c.clientid)).toEqual([clientId]);
    await expect(emqx.getClient(unique('nobody'))).resolves.toBeNull();
    await expect(
      mqtt.connectAsync(broker.mqttUrl, { clientId: unique('intruder'), username: clientId, password: 'wrong', reconnectPeriod: 0 }),
    ).rejects.toThrow();
  });

  it('subscribes on the device’s behalf, delivers, unsubscribes', async () => {
    const { clientId, client } = await connectDevice();
    const topic = `devices/${clientId}/cmd`;
    await expect(emqx.subscribe(clientId, { topic, qos: 1 })).resolves.toMatchObject({ topic, qos: 1 });
    const subs = await emqx.getClientSubscriptions(clientId);
    expect(subs?.map((s) => s.topic)).toContain(topic);

    const received = nextMessage(client, topic);
    const outcome = await emqx.publish({ topic, payload: 'reboot', qos: 1 });
    expect(outcome.status === 'delivered' && outcome.id.length > 0).toBe(true);
    await expect(received).resolves.toBe('reboot');

    await expect(emqx.publish({ topic: `devices/${clientId}/nobody-listens`, payload: 'x' })).resolves.toEqual({ status: 'no_subscriber' });
    await expect(emqx.clearAuthzCache(clientId)).resolves.toBe(true);

    await emqx.unsubscribe(clientId, topic);
    await expect(emqx.getClientSubscriptions(clientId)).resolves.toEqual([]);
    await expect(emqx.publish({ topic, payload: 'late' })).resolves.toEqual({ status: 'no_subscriber' });
  });

  it('subscribes and unsubscribes in bulk', async () => {
    const { clientId } = await connectDevice();
    const topics = [`devices/${clientId}/a`, `devices/${clientId}/b`];
    const result = await emqx.subscribeBulk(
      clientId,
      topics.map((topic) => ({ topic, qos: 0 as const })),
    );
    expect(result.failed).toEqual([]);
    expect(result.succeeded.map((s) => s.topic).sort()).toEqual(topics);
    await emqx.unsubscribeBulk(clientId, topics);
    await expect(emqx.getClientSubscriptions(clientId)).resolves.toEqual([]);
  });

  it("reads the dev broker's partial-failure form: a rejected topic is named, the rest is subscribed", async () => {
    const { clientId } = await connectDevice();
    const ok = `devices/${clientId}/ok`;
    const result = await emqx.subscribeBulk(clientId, [{ topic: ok, qos: 1 }, { topic: `$share/g/devices/${clientId}/x`, nl: 1 }]);
    expect(result.succeeded.map((s) => s.topic)).toEqual([ok]);
    expect(result.failed).toEqual([{ topic: `$share/g/devices/${clientId}/x`, reason: 'invalid_subopts_nl', clientGone: false }]);
    expect(result.clientGone).toBe(false);
  });

  it('lists clients page by page with the traffic counters EMQX reports', async () => {
    const devices = [await connectDevice(), await connectDevice(), await connectDevice()];
    const ids = devices.map((d) => d.clientId);
    const listed = await emqx.listAllClients({ clientid: ids }, { pageSize: 2 });
    expect(listed.map((c) => c.clientid).sort()).toEqual([...ids].sort());
    for (const c of listed) {
      expect(c.connected).toBe(true);
      expect(c.recv_pkt).toBeGreaterThanOrEqual(1);
      expect(c.send_oct).toBeGreaterThanOrEqual(4);
    }
  });

  it('publishes in bulk with an outcome per message, in request order', async () => {
    const { clientId, client } = await connectDevice();
    const topic = `devices/${clientId}/bulk`;
    await emqx.subscribe(clientId, { topic });
    const received = nextMessage(client, topic);
    const outcomes = await emqx.publishBulk([
      { topic: `devices/${clientId}/void`, payload: 'a' },
      { topic, payload: Buffer.from('b') },
      { topic: `devices/${clientId}/void2`, payload: 'Yw==', payload_encoding: 'base64' },
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['no_subscriber', 'delivered', 'no_subscriber']);
    await expect(received).resolves.toBe('b');
  });

  it('kicks a device: it disconnects, is gone, and proxy calls report it offline', async () => {
    const { clientId, client } = await connectDevice();
    await waitFor(() => emqx.getClient(clientId), { what: 'the client to appear' });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await expect(emqx.kickClient(clientId)).resolves.toBe(true);
    await closed;
    await waitFor(async () => (await emqx.getClient(clientId)) === null, { what: 'the client to be gone' });
    await expect(emqx.kickClient(clientId)).resolves.toBe(false);
    await expect(emqx.subscribe(clientId, { topic: 't' })).rejects.toMatchObject({ type: 'EmqxNotFoundError', code: 'CLIENTID_NOT_FOUND' });
    await expect(emqx.unsubscribe(clientId, 't')).rejects.toMatchObject({ type: 'EmqxNotFoundError', code: 'CLIENTID_NOT_FOUND' });
    await expect(emqx.getClientSubscriptions(clientId)).resolves.toBeNull();
    await expect(emqx.clearAuthzCache(clientId, { ignoreNotFound: true })).resolves.toBe(false);
  });

  it('kicks several devices in one call', async () => {
    const a = await connectDevice();
    const b = await connectDevice();
    // Listed first, so "none listed" afterwards is the kick's doing.
    await waitFor(async () => (await emqx.listAllClients({ clientid: [a.clientId, b.clientId] })).length === 2, { what: 'both clients listed' });
    await emqx.kickClients([a.clientId, b.clientId, unique('ghost')]);
    await waitFor(async () => (await emqx.listAllClients({ clientid: [a.clientId, b.clientId] })).length === 0, { what: 'both clients to be gone' });
  });
});

describe('statistics', () => {
  it('returns stats, metrics and nodes in the documented shapes', async () => {
    await connectDevice();
    const stats = await emqx.getStats();
    expect(stats['live_connections.count']).toBeGreaterThanOrEqual(1);
    expect(typeof stats['subscriptions.count']).toBe('number');
    const perNode = await emqx.getNodeStats();
    expect(perNode.length).toBeGreaterThanOrEqual(1);
    expect(typeof perNode[0]?.node).toBe('string');
    expect(typeof perNode[0]?.counters['live_connections.count']).toBe('number');
    const metrics = await emqx.getMetrics();
    expect(typeof metrics['messages.received']).toBe('number');
    const nodeMetrics = await emqx.getNodeMetrics();
    expect(typeof nodeMetrics[0]?.node).toBe('string');
    const nodes = await emqx.listNodes();
    expect(typeof nodes[0]?.node).toBe('string');
  });
});

describe('connectors, actions and rules', () => {
  it('sets up the event webhook idempotently and tears it down', async () => {
    const name = unique('hook').replace(/-/g, '_');
    const spec = { url: 'http://127.0.0.1:9/emqx/events', token: 'token-abcdef123456', name };
    await expect(emqx.ensureEventWebhook(spec)).resolves.toEqual({
      connector: 'created',
      action: 'created',
      rule: 'created',
      ruleId: `${name}_events`,
    });
    await expect(emqx.ensureEventWebhook(spec)).resolves.toMatchObject({ connector: 'updated', action: 'updated', rule: 'updated' });
    await expect(emqx.getConnector('http', name)).resolves.toMatchObject({ type: 'http', name });
    await expect(emqx.getAction('http', name)).resolves.toMatchObject({ type: 'http', name, connector: name });
    await expect(emqx.getRule(`${name}_events`)).resolves.toMatchObject({ id: `${name}_events`, actions: [`http:${name}`] });
    expect((await emqx.listAllRules()).map((r) => r.id)).toContain(`${name}_events`);
    expect((await emqx.listConnectors()).map((c) => c.name)).toContain(name);
    expect((await emqx.listActions()).map((a) => a.name)).toContain(name);

    await expect(emqx.deleteRule(`${name}_events`)).resolves.toBe(true);
    await expect(emqx.deleteAction('http', name)).resolves.toBe(true);
    await expect(emqx.deleteConnector('http', name)).resolves.toBe(true);
    await expect(emqx.deleteRule(`${name}_events`)).resolves.toBe(false);
    await expect(emqx.getConnector('http', name)).resolves.toBeNull();
  });
});

describe('faults', () => {
  it('surfaces injected 503s as retryable EmqxUnavailableError', async () => {
    broker.faults.set({ restFailureRate: 1 });
    const err = await emqx.listNodes().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmqxUnavailableError);
    expect(err).toMatchObject({ status: 503, retryable: true });
    expect(isRetryable(err)).toBe(true);
    broker.faults.reset();
    await expect(emqx.listNodes()).resolves.not.toHaveLength(0);
  });

  it('turns latency beyond the timeout into EmqxUnavailableError', async () => {
    const impatient = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET, timeoutMs: 100 });
    try {
      broker.faults.set({ restLatencyMs: 1_000 });
      await expect(impatient.getStats()).rejects.toMatchObject({ type: 'EmqxUnavailableError', code: 'TIMEOUT', retryable: true });
    } finally {
      await impatient.close();
    }
  });

  it('rejects wrong API credentials with EmqxUnauthorizedError', async () => {
    const stranger = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: 'not-the-secret' });
    try {
      const err = await stranger.listNodes().catch((e: unknown) => e);
      expect(err).toMatchObject({ type: 'EmqxUnauthorizedError', status: 401, code: 'BAD_API_KEY_OR_SECRET' });
      expect((err as Error).message).not.toContain('not-the-secret');
    } finally {
      await stranger.close();
    }
  });
});
