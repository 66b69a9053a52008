import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTION_KINDS, fleetActions, nonZero, totalActions, workflowActions, type ActionCounts } from '../../bench/temporal-actions';
import { mapPooled } from '../../src/activities/failures';
import { presenceWorkflowId } from '../../src/domain/presence';
import { deliverPresenceEvents } from '../../src/temporal/presence-delivery';
import { DEFAULT_RELAY_OPTIONS } from '../../src/webhook/relay';
import { waitFor } from '../harness';
import { connectDevice } from '../support/device-ops-env';
import { startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * What a bounce (a disconnect, then a connect inside the grace period) costs in Temporal actions,
 * counted from the device workflows' histories by Temporal Cloud's rules
 * (https://docs.temporal.io/cloud/actions; bench/temporal-actions.ts says what counts). Workflow
 * tasks are not actions.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  // The adapter as deployed: a disconnect waits WEBHOOK_DISCONNECT_HOLD's default for its reconnect.
  env = await startPresenceEnv({ relay: { disconnectHoldMs: DEFAULT_RELAY_OPTIONS.disconnectHoldMs } });
});

afterAll(async () => {
  await env?.close();
});

/** Billed actions of the device workflow so far, by kind (zeros left out). */
async function actions(clientId: string): Promise<Partial<ActionCounts>> {
  return nonZero(await workflowActions(env.temporal, presenceWorkflowId(clientId)));
}

const total = (counts: Partial<ActionCounts>): number => Object.values(counts).reduce((a, b) => a + b, 0);
const minus = (after: Partial<ActionCounts>, before: Partial<ActionCounts>): Partial<ActionCounts> =>
  Object.fromEntries(ACTION_KINDS.map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]).filter(([, v]) => v !== 0));

describe('Temporal actions per bounce', () => {
  it('costs two signals and two search attribute upserts when the events arrive apart (one grace timer serves them all); one signal when together', async () => {
    const clientId = 'pa-bounce';
    const password = `${clientId}-password`;
    await env.ops.provision({ clientId, password, acl: [], subscriptions: [], alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
    let device = await connectDevice(env.broker, clientId, clientId, password);
    await waitFor(async () => (await env.ops.presenceOf(clientId))?.counters.sessionsStarted === 1, { what: 'first session' });

    const bounces = 5;
    const before = await actions(clientId);
    for (let i = 1; i <= bounces; i++) {
      await device.endAsync();
      await waitFor(async () => (await env.ops.presenceOf(clientId))?.presence === 'offline', { what: `bounce ${i} offline` });
      device = await connectDevice(env.broker, clientId, clientId, password);
      await waitFor(async () => (await env.ops.presenceOf(clientId))?.counters.sessionsStarted === i + 1, { what: `bounce ${i} online` });
    }
    const apart = minus(await actions(clientId), before);
    console.log(`actions per bounce, events apart: ${total(apart) / bounces} (${JSON.stringify(apart)} over ${bounces} bounces)`);
    // The first disconnect's grace timer is kept (each later deadline is later still): one in all.
    expect(apart).toEqual({ signal: 2 * bounces, timer: 1, upsert: 2 * bounces });
    await device.endAsync();
    await waitFor(async () => (await env.ops.presenceOf(clientId))?.presence === 'offline', { what: 'offline' });

    // A disconnect and the reconnect in one signal (the adapter merges a device's waiting events):
    // the bounce resolves in one workflow task, so no grace timer, no upsert, no activity.
    const view = await env.ops.presenceOf(clientId);
    const lastConnect = Date.parse(view?.connectedAt ?? '');
    const together = await actions(clientId);
    const at = Date.now();
    await deliverPresenceEvents(env.temporal, {
      clientId,
      taskQueue: env.taskQueue,
      events: [
        { kind: 'connected', key: `${clientId}|connected|${at}`, connectedAt: at },
        { kind: 'disconnected', key: `${clientId}|disconnected|${at}`, connectedAt: at, disconnectedAt: at + 5, reason: 'keepalive_timeout' },
        { kind: 'connected', key: `${clientId}|connected|${at + 10}`, connectedAt: at + 10 },
      ],
    });
    await waitFor(async () => (await env.ops.presenceOf(clientId))?.presence === 'online', { what: 'online again' });
    expect(lastConnect).toBeLessThan(at);
    // The device came back from offline: one upsert (Presence=online), nothing for the bounce inside.
    expect(minus(await actions(clientId), together)).toEqual({ signal: 1, upsert: 1 });
  });

  it('adds one activity per bounce for a device with desired subscriptions (the re-apply, which also finds waiting campaigns)', async () => {
    const clientId = 'pa-subscribed';
    const password = `${clientId}-password`;
    const topic = `pa/${clientId}/cmd`;
    await env.ops.provision({
      clientId,
      password,
      acl: [{ permission: 'allow', action: 'subscribe', topic }],
      subscriptions: [{ topic, qos: 1 }],
      alarmPolicy: { graceMs: 600_000, escalationMs: [] },
    });
    const subscribed = async (): Promise<boolean> => (await env.ops.subscriptions(clientId)).live?.some((s) => s.topic === topic) ?? false;
    let device = await connectDevice(env.broker, clientId, clientId, password);
    await waitFor(subscribed, { what: 'first re-apply' });

    const bounces = 3;
    const before = await actions(clientId);
    for (let i = 1; i <= bounces; i++) {
      await device.endAsync();
      await waitFor(async () => (await env.ops.presenceOf(clientId))?.presence === 'offline', { what: `bounce ${i} offline` });
      device = await connectDevice(env.broker, clientId, clientId, password);
      await waitFor(subscribed, { what: `bounce ${i} re-applied` });
      await waitFor(async () => (await actions(clientId)).activity === (before.activity ?? 0) + i, { what: `bounce ${i} activity recorded` });
    }
    const counted = minus(await actions(clientId), before);
    console.log(`actions per bounce with a desired subscription: ${total(counted) / bounces} (${JSON.stringify(counted)} over ${bounces} bounces)`);
    expect(counted).toEqual({ signal: 2 * bounces, timer: 1, upsert: 2 * bounces, activity: bounces });
    await device.endAsync();
  });

  it('costs at most 2 actions per device when 50 devices bounce through the broker at once, back within a second', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `pa-storm-${String(i).padStart(2, '0')}`);
    // One in five has a desired subscription: its bounce adds the re-apply activity (2 in all).
    const subscribed = new Set(ids.filter((_, i) => i % 5 === 0));
    const topic = (id: string): string => `pa/${id}/cmd`;
    await mapPooled(ids, 10, (clientId) =>
      env.ops.provision({
        clientId,
        password: `${clientId}-password`,
        acl: subscribed.has(clientId) ? [{ permission: 'allow', action: 'subscribe', topic: topic(clientId) }] : [],
        subscriptions: subscribed.has(clientId) ? [{ topic: topic(clientId), qos: 1 }] : [],
        alarmPolicy: { graceMs: 600_000, escalationMs: [] },
      }),
    );
    const connect = (clientId: string): Promise<MqttClient> => connectDevice(env.broker, clientId, clientId, `${clientId}-password`);
    const live = async (clientId: string): Promise<boolean> => (await env.ops.subscriptions(clientId)).live?.some((s) => s.topic === topic(clientId)) ?? false;
    const inSession = async (sessions: number): Promise<boolean> => {
      const views = await mapPooled(ids, 10, (id) => env.ops.presenceOf(id));
      return views.every((v) => v?.presence === 'online' && v.counters.sessionsStarted === sessions);
    };
    let devices = await mapPooled(ids, 10, connect);
    await waitFor(() => inSession(1), { what: 'every device in its first session', timeoutMs: 60_000 });
    await waitFor(async () => (await mapPooled([...subscribed], 10, live)).every(Boolean), { what: 'first re-applies', timeoutMs: 30_000 });

    // Everyone drops, and comes back a second later (mqtt.js's default reconnect period).
    const from = Date.now();
    devices = await mapPooled(devices, 50, async (device, i) => {
      await device.endAsync(true);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      return connect(ids[i] as string);
    });
    await waitFor(() => inSession(2), { what: 'every device in its second session', timeoutMs: 60_000 });
    await waitFor(async () => (await mapPooled([...subscribed], 10, live)).every(Boolean), { what: 're-applies after the bounce', timeoutMs: 30_000 });
    // The re-apply activities are scheduled in the task that applied the connect, so all are recorded by now.
    const counted = await fleetActions(env.temporal, ids.map(presenceWorkflowId), { from });
    const perBounce = totalActions(counted) / ids.length;
    console.log(`actions per bounce, ${ids.length} devices through the broker: ${perBounce} (${JSON.stringify(nonZero(counted))})`);
    expect(perBounce).toBeLessThanOrEqual(2);
    expect(counted.activity).toBeGreaterThanOrEqual(subscribed.size);
    expect(await env.history.db.collection('alarms').countDocuments({ clientId: { $in: ids } })).toBe(0);
    await mapPooled(devices, 50, (device) => device.endAsync(true));
  });
});
