import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Alarm, PresenceEvent, PresencePolicy } from '../../src/domain/presence';
import { acknowledgeAlarmUpdate, alarmQuery, clearAlarmUpdate, presenceEventsSignal, presenceQuery } from '../../src/contracts/presence';
import { devicePresence } from '../../src/workflows/presence';
import { uniqueName } from '../harness';
import { startTimeSkipping, type TimeSkippingEnv } from '../support/time-skipping';

/**
 * The device workflow's timers (src/workflows/presence.ts, rules in src/domain/presence-machine.ts) on the
 * time-skipping test server: grace, escalation, flapping and its stable clear, in minutes of
 * workflow time that pass in milliseconds. The activities are fakes recording each alarm write
 * with the server's time; the end-to-end runs on the real stack are in presence.test.ts.
 */

const GRACE_MS = 60_000;
const ESCALATION_MS = [300_000, 900_000];
const FLAP_THRESHOLD = 3;
const FLAP_WINDOW_MS = 120_000;

const policy: PresencePolicy = {
  graceMs: GRACE_MS,
  escalationMs: ESCALATION_MS,
  flapThreshold: FLAP_THRESHOLD,
  flapWindowMs: FLAP_WINDOW_MS,
  monitored: true,
  desiredSubscriptions: 0,
};

let ts: TimeSkippingEnv;
const open: WorkflowHandle[] = [];

beforeAll(async () => {
  ts = await startTimeSkipping({
    // A `quiet_` device runs on a worker with no alarm webhook.
    loadPresencePolicy: ({ clientId }: { clientId: string }) => (clientId.startsWith('quiet_') ? { ...policy, notifies: false } : policy),
    recordAlarm: () => undefined,
    notifyAlarm: () => ({ sent: true }),
  });
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.terminate('test over')));
});

afterAll(async () => {
  await ts?.close();
});

async function startDevice(prefix = 'dev'): Promise<{ clientId: string; handle: WorkflowHandle<typeof devicePresence> }> {
  const clientId = uniqueName(prefix);
  const handle = await ts.env.client.workflow.start(devicePresence, { args: [{ clientId }], workflowId: `device/${clientId}`, taskQueue: ts.taskQueue });
  open.push(handle);
  return { clientId, handle };
}

const connected = (clientId: string, at: number): PresenceEvent => ({ kind: 'connected', key: `${clientId}|connected|${at}`, connectedAt: at });
const disconnected = (clientId: string, connectedAt: number, at: number): PresenceEvent => ({
  kind: 'disconnected',
  key: `${clientId}|disconnected|${connectedAt}`,
  connectedAt,
  disconnectedAt: at,
  reason: 'normal',
});

/** The alarm writes for one device, oldest first. */
function alarmWrites(clientId: string): Alarm[] {
  return ts
    .callsOf('recordAlarm')
    .map((c) => c.input.alarm)
    .filter((a) => a.clientId === clientId);
}

/** A device that was online and went offline at `at` (test time). */
async function goOffline(clientId: string, handle: WorkflowHandle<typeof devicePresence>): Promise<number> {
  const at = await ts.env.currentTimeMs();
  await handle.signal(presenceEventsSignal, { events: [connected(clientId, at - 1_000), disconnected(clientId, at - 1_000, at)] });
  return at;
}

describe('presence timers on the time-skipping server', () => {
  it('raises the offline alarm only once the grace period has passed', async () => {
    const { clientId, handle } = await startDevice();
    const offlineAt = await goOffline(clientId, handle);

    await ts.env.sleep(GRACE_MS - 5_000);
    expect(alarmWrites(clientId)).toEqual([]);
    expect(await handle.query(alarmQuery)).toBeNull();
    expect((await handle.query(presenceQuery))?.presence).toBe('offline');

    await ts.env.sleep(10_000);
    const writes = alarmWrites(clientId);
    expect(writes.map((a) => [a.kind, a.level, a.state])).toEqual([['offline', 1, 'active']]);
    const raisedAt = Date.parse(writes[0]?.raisedAt ?? '');
    expect(raisedAt - offlineAt).toBeGreaterThanOrEqual(GRACE_MS);
    expect(raisedAt - offlineAt).toBeLessThan(GRACE_MS + 5_000);
    expect(await handle.query(alarmQuery)).toMatchObject({ kind: 'offline', level: 1, state: 'active' });
  });

  it('records the alarm but schedules no notification when the worker has no alarm webhook', async () => {
    const { clientId, handle } = await startDevice('quiet');
    await goOffline(clientId, handle);
    await ts.env.sleep(GRACE_MS + (ESCALATION_MS[0] as number) + 1_000);
    expect(alarmWrites(clientId).map((a) => [a.kind, a.level])).toEqual([
      ['offline', 1],
      ['offline', 2],
    ]);
    expect(ts.callsOf('notifyAlarm').filter((c) => c.input.alarm.clientId === clientId)).toEqual([]);
  });

  it('a reconnect within the grace period raises nothing', async () => {
    const { clientId, handle } = await startDevice();
    await goOffline(clientId, handle);
    await ts.env.sleep(GRACE_MS / 2);
    const back = await ts.env.currentTimeMs();
    await handle.signal(presenceEventsSignal, { events: [connected(clientId, back)] });

    await ts.env.sleep(GRACE_MS * 10);
    expect(alarmWrites(clientId)).toEqual([]);
    expect(await handle.query(alarmQuery)).toBeNull();
    const view = await handle.query(presenceQuery);
    expect(view?.presence).toBe('online');
    expect(view?.nextTimerAt).toBeUndefined();
  });

  it('escalates to level 2 and 3 at the configured delays after the raise', async () => {
    const { clientId, handle } = await startDevice();
    await goOffline(clientId, handle);
    await ts.env.sleep(GRACE_MS + 1_000);
    const raisedAt = Date.parse(alarmWrites(clientId)[0]?.raisedAt ?? '');
    expect(alarmWrites(clientId)).toHaveLength(1);

    await ts.env.sleep((ESCALATION_MS[0] as number) - 5_000);
    expect(alarmWrites(clientId).map((a) => a.level)).toEqual([1]);
    await ts.env.sleep(10_000);
    expect(alarmWrites(clientId).map((a) => a.level)).toEqual([1, 2]);

    await ts.env.sleep((ESCALATION_MS[1] as number) - (ESCALATION_MS[0] as number));
    const writes = alarmWrites(clientId);
    expect(writes.map((a) => a.level)).toEqual([1, 2, 3]);
    const escalations = (writes[2]?.changes ?? []).filter((c) => c.change === 'escalated').map((c) => Date.parse(c.at) - raisedAt);
    expect(escalations).toHaveLength(2);
    expect(escalations[0]).toBeGreaterThanOrEqual(ESCALATION_MS[0] as number);
    expect(escalations[0]).toBeLessThan((ESCALATION_MS[0] as number) + 5_000);
    expect(escalations[1]).toBeGreaterThanOrEqual(ESCALATION_MS[1] as number);
    expect(escalations[1]).toBeLessThan((ESCALATION_MS[1] as number) + 5_000);
    expect(ts.callsOf('notifyAlarm').filter((c) => c.input.alarm.clientId === clientId).map((c) => c.input.change)).toEqual(['raised', 'escalated', 'escalated']);
    // No step after level 3: nothing more is due.
    expect((await handle.query(presenceQuery))?.nextTimerAt).toBeUndefined();
  });

  it('an acknowledged alarm does not escalate; a clear closes it', async () => {
    const { clientId, handle } = await startDevice();
    await goOffline(clientId, handle);
    await ts.env.sleep(GRACE_MS + 1_000);

    const acked = await handle.executeUpdate(acknowledgeAlarmUpdate, { args: [{ note: 'on it' }] });
    expect(acked).toMatchObject({ state: 'acknowledged', level: 1 });
    await ts.env.sleep((ESCALATION_MS[1] as number) * 2);
    expect(alarmWrites(clientId).at(-1)?.note).toBe('on it');
    expect(alarmWrites(clientId).map((a) => [a.level, a.state])).toEqual([
      [1, 'active'],
      [1, 'acknowledged'],
    ]);

    const cleared = await handle.executeUpdate(clearAlarmUpdate, { args: [{ note: 'replaced' }] });
    expect(cleared).toMatchObject({ state: 'cleared', clearedBy: 'operator' });
    expect(alarmWrites(clientId).at(-1)).toMatchObject({ state: 'cleared', clearedBy: 'operator', note: 'replaced' });
    // Cleared while still offline: nothing is raised again until the next disconnect.
    await ts.env.sleep(GRACE_MS * 10);
    expect(alarmWrites(clientId)).toHaveLength(3);
  });

  it('raises one flapping alarm and clears it after the device stayed online for the flap window', async () => {
    const { clientId, handle } = await startDevice();
    const t = await ts.env.currentTimeMs();
    const events: PresenceEvent[] = [];
    for (let i = 0; i < FLAP_THRESHOLD; i++) events.push(connected(clientId, t - 10_000 + i * 2_000), disconnected(clientId, t - 10_000 + i * 2_000, t - 9_000 + i * 2_000));
    events.push(connected(clientId, t));
    await handle.signal(presenceEventsSignal, { events });
    // One second of test time: the server runs the policy load and the alarm write before it skips.
    await ts.env.sleep(1_000);
    expect(await handle.query(alarmQuery)).toMatchObject({ kind: 'flapping', state: 'active' });

    const raised = alarmWrites(clientId);
    expect(raised.map((a) => [a.kind, a.state])).toEqual([['flapping', 'active']]);
    expect((await handle.query(presenceQuery))?.presence).toBe('online');

    await ts.env.sleep(FLAP_WINDOW_MS - 6_000);
    expect(alarmWrites(clientId)).toHaveLength(1);
    await ts.env.sleep(10_000);
    const writes = alarmWrites(clientId);
    expect(writes.map((a) => [a.kind, a.state, a.clearedBy])).toEqual([
      ['flapping', 'active', undefined],
      ['flapping', 'cleared', 'stable'],
    ]);
    const stableFor = Date.parse(writes[1]?.clearedAt ?? '') - Date.parse(raised[0]?.raisedAt ?? '');
    expect(stableFor).toBeGreaterThanOrEqual(FLAP_WINDOW_MS);
    expect(stableFor).toBeLessThan(FLAP_WINDOW_MS + 5_000);
  });
});
