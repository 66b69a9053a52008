import { WorkflowNotFoundError } from '@temporalio/client';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config';
import { presenceWorkflowId } from '../../src/domain/presence';
import { presenceTrackingFromConfig, TrackedClients } from '../../src/temporal/presence-delivery';
import { waitFor } from '../harness';
import { connectDevice } from '../support/device-ops-env';
import { startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * Which clients get a device workflow and alarms (docs/presence.md): every client's connects and
 * disconnects are recorded, but only provisioned devices (a record in `devices`) get a workflow,
 * unless PRESENCE_UNKNOWN_CLIENTS / PRESENCE_TRACK_PATTERN say otherwise. Real broker, real
 * adapter, real worker, under the default policy (`record`).
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const PASSWORD = 'unknown-client-password';

async function hasWorkflow(clientId: string): Promise<boolean> {
  try {
    await env.temporal.workflow.getHandle(presenceWorkflowId(clientId)).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function pooled<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: limit }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  }));
}

const recordedEvents = (clientIds: readonly string[]): Promise<number> => env.history.connectionEvents.countDocuments({ clientId: { $in: [...clientIds] } });

describe('presence tracking policy', () => {
  it('records 200 unknown clients without a workflow or an alarm, while a provisioned device gets both', async () => {
    const unknown = Array.from({ length: 200 }, (_, i) => `pt-unknown-${String(i).padStart(3, '0')}`);
    // Clients with EMQX credentials but no device record: monitoring tools, one-shot publishers.
    await env.emqx.importUsers('plain', unknown.map((user_id) => ({ user_id, password: PASSWORD })));
    const device = 'pt-device';
    await env.ops.provision({ clientId: device, password: `${device}-password`, acl: [], subscriptions: [], alarmPolicy: { graceMs: 1_000, escalationMs: [] } });

    const live = new Map<string, MqttClient>();
    await pooled(unknown, 20, async (id) => {
      live.set(id, await connectDevice(env.broker, id, id, PASSWORD));
    });
    await waitFor(async () => (await recordedEvents(unknown)) === unknown.length, { what: '200 connects recorded', timeoutMs: 30_000 });
    // Reconciliation finds them connected and not recorded online: it starts no workflow for them either.
    const report = await env.ops.reconcilePresence();
    expect(report.untracked).toBeGreaterThanOrEqual(unknown.length);
    expect(report.markedOnline).toBe(0);
    await pooled([...live.values()], 20, (client) => client.endAsync());
    await waitFor(async () => (await recordedEvents(unknown)) === 2 * unknown.length, { what: '200 disconnects recorded', timeoutMs: 30_000 });

    const mqttDevice = await connectDevice(env.broker, device, device, `${device}-password`);
    await waitFor(async () => (await env.ops.presenceOf(device))?.presence === 'online', { what: `${device} online` });
    await mqttDevice.endAsync();
    await waitFor(async () => (await env.history.alarms.ofDevice(device))[0]?.state === 'active', { what: `${device} offline alarm`, timeoutMs: 20_000 });
    // Every event has left the adapter's inbox, so any workflow it would start exists by now.
    await waitFor(async () => (await env.history.inbox.pendingCount()) === 0, { what: 'inbox drained', timeoutMs: 30_000 });

    const withWorkflow: string[] = [];
    await pooled(unknown, 20, async (id) => {
      if (await hasWorkflow(id)) withWorkflow.push(id);
    });
    expect(withWorkflow).toEqual([]);
    expect(await env.history.db.collection('alarms').countDocuments({ clientId: { $in: unknown } })).toBe(0);
    expect(env.notifications.filter((n) => unknown.includes(n.clientId))).toEqual([]);
    // The notification goes out after the alarm is recorded, from an activity of its own.
    await waitFor(() => env.notifications.some((n) => n.clientId === device), { what: `${device} alarm notification`, timeoutMs: 20_000 });
    expect(env.notifications.filter((n) => n.clientId === device).map((n) => `${n.kind}:${n.change}`)).toEqual(['offline:raised']);
    // The history still has every client.
    expect(await env.ops.history('pt-unknown-007')).toHaveLength(2);
  });

  it('tracks a device provisioned after its first connect: from reconciliation while it stays connected, and from its next event', async () => {
    const early = 'pt-early';
    await env.emqx.importUsers('plain', [{ user_id: early, password: PASSWORD }]);
    const first = await connectDevice(env.broker, early, early, PASSWORD);
    await waitFor(async () => (await recordedEvents([early])) === 1, { what: 'first connect recorded' });
    await waitFor(async () => (await env.history.inbox.pendingCount()) === 0, { what: 'inbox drained' });
    expect(await hasWorkflow(early)).toBe(false);

    // Provisioned while connected: the next reconciliation finds it online and starts its workflow.
    await env.ops.provision({ clientId: early, password: PASSWORD, acl: [], subscriptions: [], alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
    const report = await env.ops.reconcilePresence();
    expect(report.markedOnline).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await env.ops.presenceOf(early))?.presence === 'online', { what: `${early} online after reconciliation` });
    await first.endAsync();
    await waitFor(async () => (await env.ops.presenceOf(early))?.presence === 'offline', { what: `${early} offline` });

    // Provisioned while offline: its next connect starts the workflow.
    const later = 'pt-later';
    await env.emqx.importUsers('plain', [{ user_id: later, password: PASSWORD }]);
    await (await connectDevice(env.broker, later, later, PASSWORD)).endAsync();
    await waitFor(async () => (await recordedEvents([later])) === 2, { what: 'first session recorded' });
    await waitFor(async () => (await env.history.inbox.pendingCount()) === 0, { what: 'inbox drained' });
    expect(await hasWorkflow(later)).toBe(false);
    await env.ops.provision({ clientId: later, password: PASSWORD, acl: [], subscriptions: [], alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
    const again = await connectDevice(env.broker, later, later, PASSWORD);
    try {
      const view = await waitFor(async () => {
        const v = await env.ops.presenceOf(later);
        return v?.presence === 'online' ? v : null;
      }, { what: `${later} online after its next connect` });
      expect(view.counters.sessionsStarted).toBe(1);
    } finally {
      await again.endAsync();
    }
  });

  it('wakes a campaign waiting for an unknown client directly when it connects, without a device workflow', async () => {
    const clientId = 'pt-target';
    await env.emqx.importUsers('plain', [{ user_id: clientId, password: PASSWORD }]);
    const topic = `pt/${clientId}/cmd`;
    const started = await env.ops.campaigns.start({
      targets: { list: [{ clientId }] },
      message: { topic: 'pt/${clientid}/cmd', payload: { format: 'text', text: 'for ${clientid}' }, qos: 1 },
      // Only a wake-up can deliver before the deadline: the recheck is ten minutes away.
      offline: { wait: true, recheckIntervalMs: 600_000 },
      deadlineMs: 30_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.waiting === 1, { what: 'target waiting', timeoutMs: 15_000 });
    const device = await connectDevice(env.broker, clientId, clientId, PASSWORD);
    const received: string[] = [];
    device.on('message', (t: string, payload: Buffer) => {
      if (t === topic) received.push(payload.toString());
    });
    try {
      await device.subscribeAsync(topic, { qos: 1 });
      expect(await env.ops.campaigns.handle(started.campaignId).result()).toMatchObject({ state: 'completed', counts: { total: 1, delivered: 1 } });
      await waitFor(() => received.length > 0, { what: 'message received' });
      expect(received).toEqual([`for ${clientId}`]);
      expect(await hasWorkflow(clientId)).toBe(false);
    } finally {
      await device.endAsync();
    }
  });

  it('decides by record, PRESENCE_UNKNOWN_CLIENTS and PRESENCE_TRACK_PATTERN, caching only provisioned ids', async () => {
    const ids = ['pt-rec-1', 'pt-lab-1', 'pt-other-1'];
    await env.history.devices.deleteMany({ _id: { $in: ids } });
    const byRecord = new TrackedClients(env.history, presenceTrackingFromConfig(loadConfig(['presence'], {}).presence));
    const byPattern = new TrackedClients(env.history, presenceTrackingFromConfig(loadConfig(['presence'], { PRESENCE_TRACK_PATTERN: 'pt-lab-.*' }).presence));
    const all = new TrackedClients(env.history, presenceTrackingFromConfig(loadConfig(['presence'], { PRESENCE_UNKNOWN_CLIENTS: 'track' }).presence));

    expect([...(await byRecord.among(ids))]).toEqual([]);
    expect([...(await byPattern.among(ids))]).toEqual(['pt-lab-1']);
    expect([...(await all.among(ids))].sort()).toEqual([...ids].sort());
    // An unknown answer is not cached: a record written later counts at once.
    await env.history.devices.insertOne({ _id: 'pt-rec-1', clientId: 'pt-rec-1', username: 'pt-rec-1', acl: [], subscriptions: [], tags: [], status: 'deprovisioned', provisionedAt: '', updatedAt: '' });
    expect([...(await byRecord.among(ids))]).toEqual(['pt-rec-1']);
    // The pattern covers the whole id.
    expect(await byPattern.has('x-pt-lab-1')).toBe(false);

    expect(() => loadConfig(['presence'], { PRESENCE_UNKNOWN_CLIENTS: 'alarm' })).toThrow(/PRESENCE_UNKNOWN_CLIENTS.*must be record or track/);
    expect(() => loadConfig(['presence'], { PRESENCE_TRACK_PATTERN: 'pt-(' })).toThrow(ConfigError);
    expect(() => loadConfig(['presence'], { PRESENCE_TRACK_PATTERN: 'pt-(' })).toThrow(/PRESENCE_TRACK_PATTERN.*must be a regular expression/);
  });
});
