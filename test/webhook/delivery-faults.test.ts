import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { ensurePresenceReconcileSchedule, PRESENCE_RECONCILE_SCHEDULE_ID } from '../../src/temporal/schedules';
import { waitFor } from '../harness';
import { runCliWith } from '../support/cli-runner';
import { connectDevice } from '../support/device-ops-env';
import { startPresenceEnv, WEBHOOK_TOKEN, type PresenceTestEnv } from '../support/presence-env';

/**
 * EMQX's delivery faults, injected by the broker (https://github.com/emqx/emqx/issues/12954: unordered,
 * duplicated, sometimes dropped), against the whole path: the recorded presence ends up where
 * EMQX's live view is, and reconciliation heals what was dropped.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const cli = (args: string[]) => runCliWith(env.ops, args);

const password = (id: string): string => `${id}-password`;

async function provisionAll(ids: string[], alarmPolicy = { graceMs: 600_000, escalationMs: [] as number[] }): Promise<void> {
  await Promise.all(ids.map((clientId) => env.ops.provision({ clientId, password: password(clientId), acl: [], subscriptions: [], alarmPolicy })));
}

/** Connects, disconnects and reconnects each device `cycles` times; odd devices end offline. */
async function churn(ids: string[], cycles: number): Promise<Map<string, MqttClient>> {
  const live = new Map<string, MqttClient>();
  await Promise.all(
    ids.map(async (id, i) => {
      for (let c = 0; c < cycles; c++) {
        const device = await connectDevice(env.broker, id, id, password(id));
        await device.endAsync();
      }
      if (i % 2 === 0) live.set(id, await connectDevice(env.broker, id, id, password(id)));
    }),
  );
  return live;
}

/**
 * Every device's recorded presence equals EMQX's live view. A device whose every event was dropped
 * and that is offline has no workflow: its presence is unknown, which does not contradict EMQX.
 */
async function presenceMatchesEmqx(ids: string[]): Promise<boolean> {
  for (const id of ids) {
    const [view, client] = await Promise.all([env.ops.presenceOf(id), env.emqx.getClient(id)]);
    const online = client?.connected === true;
    const recorded = view?.presence ?? 'unknown';
    if (online ? recorded !== 'online' : recorded === 'online') return false;
  }
  return true;
}

/** Every event the rule engine fired has been delivered, failed or dropped: nothing queued or in flight. */
function brokerDeliveryDone(): boolean {
  const m = env.broker.webhookMetrics()['http:device_ops'];
  return m !== undefined && m.queuing === 0 && m.inflight === 0 && m.success + m.failed + m.dropped === m.matched + m.duplicated;
}

/** The Presence search attribute, as visibility lists it, agrees with each workflow's own state. */
async function visibilityCaughtUp(ids: string[]): Promise<boolean> {
  const listed = new Set<string>();
  for await (const wf of env.temporal.workflow.list({ query: `TaskQueue = '${env.taskQueue}' AND Presence = 'online'` })) listed.add(wf.workflowId.replace(/^device\//, ''));
  for (const id of ids) {
    const view = await env.ops.presenceOf(id);
    if ((view?.presence === 'online') !== listed.has(id)) return false;
  }
  return true;
}

describe('webhook delivery faults', () => {
  it('reaches the same presence when EMQX duplicates and reorders events, and stores each event once', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => `df-dup-${i}`);
    await provisionAll(ids);
    env.broker.faults.set({ webhookDuplicateRate: 0.5, webhookReorder: true });
    let live: Map<string, MqttClient>;
    try {
      live = await churn(ids, 3);
      await waitFor(brokerDeliveryDone, { what: 'the broker to finish delivering' });
      await waitFor(() => presenceMatchesEmqx(ids), { timeoutMs: 30_000, what: 'presence equals EMQX under duplicates and reordering' });
    } finally {
      env.broker.faults.reset();
    }
    const metrics = env.broker.webhookMetrics()['http:device_ops'];
    expect(metrics?.duplicated).toBeGreaterThan(0);
    // 3 cycles + the final connect for even devices: every event stored exactly once.
    for (const [i, id] of ids.entries()) {
      const history = await env.ops.history(id, 100);
      expect(history).toHaveLength(i % 2 === 0 ? 7 : 6);
      expect(new Set(history.map((e) => `${e.event}|${e.at}`)).size).toBe(history.length);
    }
    await Promise.all([...live.values()].map((d) => d.endAsync()));
  });

  it('heals dropped webhooks within one reconciliation', async () => {
    const churned = Array.from({ length: 8 }, (_, i) => `df-drop-${i}`);
    const late = 'df-drop-late';
    const ids = [...churned, late];
    await provisionAll(ids);
    env.broker.faults.set({ webhookDropRate: 0.5, webhookReorder: true, webhookDuplicateRate: 0.2 });
    let live: Map<string, MqttClient>;
    try {
      live = await churn(churned, 2);
      // One connect that certainly never reaches the adapter, whatever the random drops did (its
      // webhook is queued after CONNACK: keep dropping until it was).
      const droppedSoFar = (): number => env.broker.webhookMetrics()['http:device_ops']?.['dropped.other'] ?? 0;
      await waitFor(brokerDeliveryDone, { what: 'the churn delivered or dropped' });
      const before = droppedSoFar();
      env.broker.faults.set({ webhookDropRate: 1 });
      live.set(late, await connectDevice(env.broker, late, late, password(late)));
      await waitFor(() => droppedSoFar() > before, { what: 'the late connect webhook dropped' });
    } finally {
      env.broker.faults.reset();
    }
    const metrics = env.broker.webhookMetrics()['http:device_ops'];
    expect(metrics?.['dropped.other']).toBeGreaterThan(0);
    // Let everything the broker still delivers arrive, reach the workflows and show in visibility
    // (which reconciliation reads); then reconcile once.
    await waitFor(brokerDeliveryDone, { what: 'the broker to finish delivering' });
    await waitFor(async () => env.adapter.relay.depth() === 0 && (await env.history.inbox.pendingCount()) === 0, { what: 'inbox drained' });
    await waitFor(() => visibilityCaughtUp(ids), { timeoutMs: 20_000, what: 'visibility shows what the workflows recorded' });
    expect(await presenceMatchesEmqx(ids)).toBe(false);
    const report = await env.ops.reconcilePresence();
    expect(report.live).toBeGreaterThanOrEqual(live.size);
    expect(report.markedOnline).toBeGreaterThanOrEqual(1);
    await waitFor(() => presenceMatchesEmqx(ids), { timeoutMs: 20_000, what: 'presence equals EMQX after reconciliation' });
    await Promise.all([...live.values()].map((d) => d.endAsync()));
  });

  it('turns a flapping device into one flapping alarm, not one offline alarm per disconnect, and clears it once stable', async () => {
    const id = 'df-flap';
    await env.ops.provision({
      clientId: id,
      password: password(id),
      acl: [],
      subscriptions: [],
      // A grace period longer than one flap, so only flapping can raise anything here.
      alarmPolicy: { graceMs: 10_000, escalationMs: [], flapThreshold: 3, flapWindowMs: 10_000 },
    });
    const presence = async () => env.ops.presenceOf(id);
    for (let i = 1; i <= 5; i++) {
      const device = await connectDevice(env.broker, id, id, password(id));
      await waitFor(async () => (await presence())?.counters.sessionsStarted === i, { what: `connect ${i}` });
      await device.endAsync();
      await waitFor(async () => (await presence())?.counters.sessionsEnded === i, { what: `disconnect ${i}` });
    }
    expect((await presence())?.alarm).toMatchObject({ kind: 'flapping', state: 'active', level: 1 });
    // The workflow records the alarm right after raising it.
    const stored = await waitFor(async () => {
      const alarms = await env.history.alarms.ofDevice(id);
      return alarms.length > 0 ? alarms : null;
    }, { what: 'alarm recorded' });
    expect(stored.map((a) => a.kind)).toEqual(['flapping']);

    // Online and stable for a whole flap window: the flapping alarm clears itself.
    const device = await connectDevice(env.broker, id, id, password(id));
    try {
      await waitFor(async () => (await env.history.alarms.ofDevice(id))[0]?.state === 'cleared', { timeoutMs: 30_000, what: 'flapping alarm cleared' });
      expect((await presence())?.alarm).toMatchObject({ state: 'cleared', clearedBy: 'stable' });
      expect((await env.history.alarms.ofDevice(id))[0]).toMatchObject({ kind: 'flapping', state: 'cleared', clearedBy: 'stable' });
      expect(await env.history.alarms.ofDevice(id)).toHaveLength(1);
    } finally {
      await device.endAsync();
    }
  });

  it('sets up the EMQX webhook idempotently from the CLI, without printing the token', async () => {
    const bad = await cli(['emqx', 'setup-webhook', '--url', 'ftp://nowhere', '--token', WEBHOOK_TOKEN]);
    expect(bad).toMatchObject({ code: 2, connected: false });
    expect(bad.stderr).toMatch(/--url: must be an http\(s\) URL/);
    expect((await cli(['emqx', 'setup-webhook', '--url', `${env.adapterUrl}/emqx/events`, '--token', 'short'])).code).toBe(2);

    const first = await cli(['emqx', 'setup-webhook', '--url', `${env.adapterUrl}/emqx/events`, '--token', WEBHOOK_TOKEN, '--topic', 'telemetry/+/up', '--json']);
    expect(first.stderr).toBe('');
    const out = JSON.parse(first.stdout);
    expect(out).toMatchObject({ ruleId: 'device_ops_events', connector: 'updated', action: 'updated', rule: 'updated' });
    expect(out.topics).toContain('telemetry/+/up');
    expect(out.replies).toEqual({ action: 'updated', rule: 'updated', ruleId: 'device_ops_replies', topics: ['devices/+/jobs/+/status', 'devices/+/commands/+/reply'] });
    expect(first.stdout).not.toContain(WEBHOOK_TOKEN);
    const rule = await env.emqx.getRule('device_ops_events');
    expect(rule?.sql).toContain('telemetry/+/up');

    // Publishes on the chosen topic are stored as device events.
    const id = 'df-telemetry';
    await env.ops.provision({ clientId: id, password: password(id), acl: [{ permission: 'allow', action: 'publish', topic: 'telemetry/${clientid}/up' }], subscriptions: [] });
    const device = await connectDevice(env.broker, id, id, password(id));
    await device.publishAsync(`telemetry/${id}/up`, '{"t":21.5}', { qos: 1 });
    await device.endAsync();
    const stored = await waitFor(async () => (await env.history.inbox.deviceEventsOf(id)).find((e) => e.event === 'message.publish'), { what: 'message stored' });
    expect(stored).toMatchObject({ topic: `telemetry/${id}/up`, payload: '{"t":21.5}' });
  });

  it('creates the reconciliation schedule idempotently with its interval', async () => {
    // Its own schedule id: a worker process started by another test file creates the default one
    // in the same Temporal namespace.
    const scheduleId = `${PRESENCE_RECONCILE_SCHEDULE_ID}-${env.taskQueue}`;
    try {
      expect(await ensurePresenceReconcileSchedule(env.temporal, { taskQueue: env.taskQueue, intervalMs: 120_000, scheduleId })).toBe('created');
      expect(await ensurePresenceReconcileSchedule(env.temporal, { taskQueue: env.taskQueue, intervalMs: 60_000, scheduleId })).toBe('updated');
      const described = await env.temporal.schedule.getHandle(scheduleId).describe();
      expect(described.spec.intervals?.[0]?.every).toBe(60_000);
    } finally {
      await env.temporal.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    }
  });
});
