import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presenceWorkflowId } from '../../src/domain/presence';
import { deliverPresenceEvents } from '../../src/temporal/presence-delivery';
import { waitFor } from '../harness';
import { connectDevice } from '../support/device-ops-env';
import { startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * What a bounce (a disconnect, then a connect inside the grace period) costs in Temporal actions,
 * counted from the device workflow's history: signals received, timers, activities, search
 * attribute upserts and signals to other workflows are billed actions
 * (https://docs.temporal.io/cloud/actions); workflow tasks are not.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const { EventType } = temporal.api.enums.v1;
const BILLED: ReadonlyMap<temporal.api.enums.v1.EventType, string> = new Map([
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, 'signal'],
  [EventType.EVENT_TYPE_TIMER_STARTED, 'timer'],
  [EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 'activity'],
  [EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, 'upsert'],
  [EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, 'external signal'],
  [EventType.EVENT_TYPE_MARKER_RECORDED, 'marker'],
]);

/** Billed actions in the device workflow's current run, by kind. */
async function actions(clientId: string): Promise<Record<string, number>> {
  const history = await env.temporal.workflow.getHandle(presenceWorkflowId(clientId)).fetchHistory();
  const counts: Record<string, number> = {};
  for (const event of history.events ?? []) {
    const kind = event.eventType ? BILLED.get(event.eventType) : undefined;
    if (kind) counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);
const minus = (after: Record<string, number>, before: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v !== 0));

describe('Temporal actions per bounce', () => {
  it('costs two signals, one grace timer and two search attribute upserts when the events arrive apart; one signal when together', async () => {
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
    expect(apart).toEqual({ signal: 2 * bounces, timer: bounces, upsert: 2 * bounces });
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
    expect(counted).toEqual({ signal: 2 * bounces, timer: bounces, upsert: 2 * bounces, activity: bounces });
    await device.endAsync();
  });
});
