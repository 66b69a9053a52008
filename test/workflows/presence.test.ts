import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { presenceWorkflowId, type AlarmAction } from '../../src/domain/presence';
import { clearAlarmUpdate } from '../../src/contracts/presence';
import { AlarmLevelKey, PresenceKey } from '../../src/domain/search-attributes';
import { deliverPresenceEvents } from '../../src/temporal/presence-delivery';
import { waitFor } from '../harness';
import { runCliWith } from '../support/cli-runner';
import { connectDevice, nextMessage } from '../support/device-ops-env';
import { startPresenceEnv, WEBHOOK_TOKEN, type PresenceTestEnv } from '../support/presence-env';

/**
 * The presence path end to end, with real MQTT devices: the broker's rule engine posts EMQX events
 * to the webhook adapter, which stores them and signals each device's workflow; alarms go to
 * MongoDB and to the alarm webhook.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const SHORT_POLICY = { graceMs: 1_000, escalationMs: [1_500] };

async function provision(clientId: string, extra: { subscriptions?: { topic: string; qos: 0 | 1 | 2 }[]; alarmPolicy?: { graceMs: number; escalationMs: number[] } } = {}): Promise<void> {
  await env.ops.provision({
    clientId,
    password: `${clientId}-password`,
    acl: (extra.subscriptions ?? []).map((s) => ({ permission: 'allow' as const, action: 'subscribe' as const, topic: s.topic })),
    subscriptions: extra.subscriptions ?? [],
    alarmPolicy: extra.alarmPolicy ?? SHORT_POLICY,
  });
}

const connect = (clientId: string): Promise<MqttClient> => connectDevice(env.broker, clientId, clientId, `${clientId}-password`);

async function presenceOf(clientId: string) {
  return env.ops.presenceOf(clientId);
}

/** Waits until the device workflow has applied `sessions` session starts and shows `presence`. */
async function waitForPresence(clientId: string, presence: 'online' | 'offline', sessions?: number) {
  return waitFor(
    async () => {
      const view = await presenceOf(clientId);
      if (view?.presence !== presence) return null;
      if (sessions !== undefined && view.counters.sessionsStarted !== sessions) return null;
      return view;
    },
    { timeoutMs: 20_000, what: `${clientId} ${presence}` },
  );
}

const cli = (args: string[]) => runCliWith(env.ops, args);

describe('device presence', () => {
  it('records connect and disconnect, and raises nothing when the device reconnects inside the grace period', async () => {
    await provision('pr-blip', { alarmPolicy: { graceMs: 3_000, escalationMs: [1_000] } });
    const first = await connect('pr-blip');
    await waitForPresence('pr-blip', 'online', 1);
    await first.endAsync();
    await waitForPresence('pr-blip', 'offline', 1);
    const second = await connect('pr-blip');
    const view = await waitForPresence('pr-blip', 'online', 2);
    // Nothing is due any more (no grace period running), so no alarm can come.
    expect(view.nextTimerAt).toBeUndefined();
    expect(view.alarm).toBeNull();
    expect(view.counters).toMatchObject({ sessionsStarted: 2, sessionsEnded: 1, alarmsRaised: 0 });
    await second.endAsync();
    await waitForPresence('pr-blip', 'offline', 2);
    const history = await env.ops.history('pr-blip');
    expect(history.map((e) => e.event)).toEqual(['disconnected', 'connected', 'disconnected', 'connected']);
    expect(history[0]?.reason).toBe('normal');
  });

  it('raises level 1 after the grace period, then level 2, then clears on reconnect and re-applies subscriptions', async () => {
    const topic = 'pr/escalate/cmd';
    await provision('pr-escalate', { subscriptions: [{ topic, qos: 1 }], alarmPolicy: SHORT_POLICY });
    const device = await connect('pr-escalate');
    await waitFor(async () => (await env.ops.subscriptions('pr-escalate')).live?.some((s) => s.topic === topic), { what: 'desired subscription applied', timeoutMs: 20_000 });
    await device.endAsync();

    const level2 = await waitFor(async () => ((await presenceOf('pr-escalate'))?.alarm?.level === 2 ? presenceOf('pr-escalate') : null), {
      timeoutMs: 20_000,
      what: 'level 2',
    });
    expect(level2?.alarm).toMatchObject({ kind: 'offline', state: 'active', level: 2 });
    const stored = await waitFor(
      async () => {
        const alarms = await env.history.alarms.ofDevice('pr-escalate');
        return alarms[0]?.level === 2 ? alarms : null;
      },
      { what: 'level 2 recorded' },
    );
    expect(stored[0]?.changes.map((c) => `${c.change}:${c.level}`)).toEqual(['raised:1', 'escalated:2']);
    await waitFor(() => env.notifications.filter((n) => n.clientId === 'pr-escalate').length >= 2, { what: 'two notifications' });
    expect(env.notifications.filter((n) => n.clientId === 'pr-escalate').map((n) => `${n.change}:${n.level}`)).toEqual(['raised:1', 'escalated:2']);

    // The Temporal UI can list every device in alarm and every offline device.
    const described = await env.temporal.workflow.getHandle(presenceWorkflowId('pr-escalate')).describe();
    expect(described.typedSearchAttributes.get(PresenceKey)).toBe('offline');
    expect(described.typedSearchAttributes.get(AlarmLevelKey)).toBe(2);
    const inAlarm = await waitFor(async () => {
      const ids: string[] = [];
      for await (const wf of env.temporal.workflow.list({ query: `TaskQueue = '${env.taskQueue}' AND AlarmLevel > 0 AND Presence = 'offline'` })) ids.push(wf.workflowId);
      return ids.includes('device/pr-escalate') ? ids : null;
    }, { what: 'visibility lists the device in alarm' });
    expect(inAlarm).toContain('device/pr-escalate');

    const again = await connect('pr-escalate');
    try {
      const view = await waitForPresence('pr-escalate', 'online', 2);
      expect(view.alarm).toMatchObject({ state: 'cleared', clearedBy: 'reconnect', level: 2 });
      await waitFor(async () => (await env.ops.subscriptions('pr-escalate')).live?.some((s) => s.topic === topic), { what: 'subscription re-applied', timeoutMs: 20_000 });
      const received = nextMessage(again, topic);
      await env.emqx.publish({ topic, payload: 'welcome back', qos: 1 });
      expect(await received).toBe('welcome back');
      await waitFor(async () => (await env.history.alarms.ofDevice('pr-escalate'))[0]?.state === 'cleared', { what: 'clear recorded' });
      expect((await env.history.alarms.ofDevice('pr-escalate'))[0]).toMatchObject({ state: 'cleared', clearedBy: 'reconnect' });
    } finally {
      await again.endAsync();
    }
  });

  it('stops escalating when acknowledged, and ack/clear go through the CLI', async () => {
    await provision('pr-ack', { alarmPolicy: { graceMs: 500, escalationMs: [1_500, 3_000] } });
    const device = await connect('pr-ack');
    await waitForPresence('pr-ack', 'online', 1);
    await device.endAsync();
    await waitFor(async () => (await presenceOf('pr-ack'))?.alarm?.state === 'active', { timeoutMs: 20_000, what: 'alarm raised' });

    const acked = await cli(['alarm', 'ack', 'pr-ack', '--note', 'field team informed', '--json']);
    expect(acked.stderr).toBe('');
    expect(JSON.parse(acked.stdout)).toMatchObject({ clientId: 'pr-ack', state: 'acknowledged', level: 1 });
    const view = await presenceOf('pr-ack');
    expect(view?.nextTimerAt).toBeUndefined();
    expect(view?.alarm).toMatchObject({ level: 1, state: 'acknowledged' });

    const again = await cli(['alarm', 'ack', 'pr-ack']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already acknowledged/);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);

    // The workflow checks what the client library checks, for callers that bypass it.
    const handle = env.temporal.workflow.getHandle(presenceWorkflowId('pr-ack'));
    const refusal = (action: unknown) =>
      handle.executeUpdate(clearAlarmUpdate, { args: [action as AlarmAction] }).then(
        () => 'accepted',
        (err: unknown) => (err as { cause?: Error }).cause?.message ?? String(err),
      );
    expect(await refusal({ note: 'x'.repeat(501) })).toBe('note: must be at most 500 characters');
    expect(await refusal({ note: 'bell\u0007' })).toBe('note: must not contain control characters');
    expect(await refusal({ note: 'ok', by: 'me' })).toBe('by: is not a field of an alarm action');
    expect((await presenceOf('pr-ack'))?.alarm?.state).toBe('acknowledged');

    const open = JSON.parse((await cli(['alarms', '--active', '--json'])).stdout) as { clientId: string; level: number; state: string; raisedAt: string }[];
    expect(open.find((a) => a.clientId === 'pr-ack')).toMatchObject({ level: 1, state: 'acknowledged', raisedAt: expect.any(String) });

    const cleared = await cli(['alarm', 'clear', 'pr-ack', '--note', 'decommissioned site', '--json']);
    expect(JSON.parse(cleared.stdout)).toMatchObject({ state: 'cleared', clearedBy: 'operator' });
    const after = JSON.parse((await cli(['alarms', '--active', '--json'])).stdout) as { clientId: string }[];
    expect(after.map((a) => a.clientId)).not.toContain('pr-ack');
    const [stored] = await env.history.alarms.ofDevice('pr-ack');
    expect(stored).toMatchObject({ state: 'cleared', clearedBy: 'operator', note: 'decommissioned site', level: 1 });

    expect((await cli(['alarm', 'clear', 'pr-ack'])).stderr).toMatch(/no open alarm/);
    expect((await cli(['alarm', 'ack', 'not a/valid#id'])).code).toBe(2);
    expect((await cli(['alarm', 'ack', 'pr-never-seen'])).stderr).toMatch(/no presence workflow/);
  });

  it('records reason kicked when the device is kicked, newest first in history', async () => {
    await provision('pr-kick');
    const device = await connect('pr-kick');
    await waitForPresence('pr-kick', 'online', 1);
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    await env.ops.kick('pr-kick');
    await closed;
    await waitForPresence('pr-kick', 'offline');
    const out = await cli(['history', 'pr-kick', '--json']);
    const events = JSON.parse(out.stdout) as { event: string; at: string; reason?: string }[];
    expect(events[0]).toMatchObject({ event: 'disconnected', reason: 'kicked' });
    expect(events[1]).toMatchObject({ event: 'connected' });
    expect(Date.parse(events[0]!.at)).toBeGreaterThanOrEqual(Date.parse(events[1]!.at));
  });

  it('shows the live view and the recorded presence in status, and says when they disagree until reconciliation', async () => {
    await provision('pr-status');
    const device = await connect('pr-status');
    await waitForPresence('pr-status', 'online', 1);
    const agreeing = JSON.parse((await cli(['status', 'pr-status', '--json'])).stdout);
    expect(agreeing).toMatchObject({ clientId: 'pr-status', online: true, presence: 'online', alarm: null });
    expect(agreeing.note).toBeUndefined();

    // EMQX drops the disconnect webhook: the recorded presence is now wrong.
    env.broker.faults.set({ webhookDropRate: 1 });
    try {
      await device.endAsync();
      await waitFor(async () => (await env.emqx.getClient('pr-status')) === null, { what: 'client gone from EMQX' });
    } finally {
      env.broker.faults.reset();
    }
    const disagreeing = JSON.parse((await cli(['status', 'pr-status', '--json'])).stdout);
    expect(disagreeing).toMatchObject({ online: false, presence: 'online', note: expect.stringMatching(/disagree/) });

    const report = JSON.parse((await cli(['presence', 'reconcile', '--json'])).stdout);
    expect(report.markedOffline).toBeGreaterThanOrEqual(1);
    await waitForPresence('pr-status', 'offline');
    const healed = JSON.parse((await cli(['status', 'pr-status', '--json'])).stdout);
    expect(healed).toMatchObject({ online: false, presence: 'offline' });
    expect(healed.note).toBeUndefined();
  });

  it('picks up a changed alarm policy from provisioning, and ends when the device is deprovisioned', async () => {
    await provision('pr-policy', { alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
    const device = await connect('pr-policy');
    await waitForPresence('pr-policy', 'online', 1);
    await provision('pr-policy', { alarmPolicy: { graceMs: 2_000, escalationMs: [5_000] } });
    await waitFor(async () => (await presenceOf('pr-policy'))?.policy.graceMs === 2_000, { what: 'new policy' });

    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    await (await env.ops.startDeprovisioning('pr-policy')).result();
    await closed;
    const handle = env.temporal.workflow.getHandle(presenceWorkflowId('pr-policy'));
    await waitFor(async () => (await handle.describe()).status.name === 'COMPLETED', { what: 'presence workflow completed', timeoutMs: 20_000 });
    expect(await env.history.alarms.ofDevice('pr-policy')).toEqual([]);
  });

  it('continues as new under many events and loses none of them', async () => {
    const clientId = 'pr-flapper';
    await provision(clientId, { alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
    // Start the device workflow with a low continue-as-new threshold, before any event.
    await deliverPresenceEvents(env.temporal, { clientId, taskQueue: env.taskQueue, events: [], continueAsNewAfter: 10 });
    const handle = env.temporal.workflow.getHandle(presenceWorkflowId(clientId));
    const firstRun = (await handle.describe()).runId;
    const flaps = 25;
    for (let i = 1; i <= flaps; i++) {
      const device = await connect(clientId);
      await waitForPresence(clientId, 'online', i);
      await device.endAsync();
      await waitFor(async () => (await presenceOf(clientId))?.counters.sessionsEnded === i, { what: `flap ${i} ended`, timeoutMs: 20_000 });
    }
    const view = await presenceOf(clientId);
    expect(view).toMatchObject({ presence: 'offline', counters: { sessionsStarted: flaps, sessionsEnded: flaps } });
    expect(view?.counters.runs).toBeGreaterThan(2);
    expect((await handle.describe()).runId).not.toBe(firstRun);
    expect(await env.ops.history(clientId, 1_000)).toHaveLength(2 * flaps);
    const recent = await env.ops.recentPresenceEvents(clientId);
    expect(recent[0]).toMatchObject({ kind: 'disconnected', outcome: 'applied' });
  });
});

describe('secrets', () => {
  it('keeps the webhook token out of MongoDB', async () => {
    // Documents of its own in every collection checked, so the check has something to look at even
    // when this test runs alone: a connect and disconnect, a subscription, an offline alarm.
    const topic = 'secret/pr-secret/cmd';
    await provision('pr-secret', { subscriptions: [{ topic, qos: 1 }] });
    const device = await connect('pr-secret');
    await device.subscribeAsync(topic, { qos: 1 });
    await waitFor(async () => (await env.history.db.collection('device_events').countDocuments({ clientId: 'pr-secret' })) > 0, { what: 'pr-secret subscription recorded' });
    await device.endAsync();
    await waitFor(async () => (await env.history.alarms.ofDevice('pr-secret')).length > 0, { what: 'pr-secret offline alarm recorded' });
    for (const name of ['connection_events', 'device_events', 'alarms']) {
      const docs = await env.history.db.collection(name).find({}).toArray();
      expect(docs.length, name).toBeGreaterThan(0);
      expect(JSON.stringify(docs)).not.toContain(WEBHOOK_TOKEN);
    }
  });
});
