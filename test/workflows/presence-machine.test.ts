import { describe, expect, it } from 'vitest';
import type { PresenceEvent, PresencePolicy } from '../../src/domain/presence';
import {
  acknowledge,
  acknowledgeRefusal,
  applyEvents,
  clearByOperator,
  fireDueTimers,
  initialState,
  isFlapping,
  MAX_EVENTS_APPLIED,
  nextDeadline,
  noteSessionEnd,
  openAlarmLevel,
  timerToStart,
  updatePolicy,
  type PresenceEffect,
  type PresenceState,
} from '../../src/domain/presence-machine';

/** The device workflow's rules on their own: no Temporal, time passed in explicitly. */

const policy: PresencePolicy = { graceMs: 1_000, escalationMs: [2_000, 5_000], flapThreshold: 4, flapWindowMs: 60_000, monitored: true, desiredSubscriptions: 1 };

const connected = (connectedAt: number): PresenceEvent => ({ kind: 'connected', key: `c|${connectedAt}`, connectedAt });
const disconnected = (connectedAt: number, disconnectedAt: number, reason = 'normal'): PresenceEvent => ({
  kind: 'disconnected',
  key: `d|${connectedAt}`,
  connectedAt,
  disconnectedAt,
  reason,
});

function fresh(): PresenceState {
  return initialState('dev-1', { ...policy });
}

const types = (effects: PresenceEffect[]): string[] => effects.map((e) => e.type);

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe('presence ordering', () => {
  it('goes online on connect and asks for the desired subscriptions', () => {
    const state = fresh();
    expect(types(applyEvents(state, [connected(100)], 100))).toEqual(['applySubscriptions']);
    expect(state.presence).toBe('online');
  });

  it('reaches the same presence whatever order the events arrive in, one at a time', () => {
    const offlineEnd = [connected(100), disconnected(100, 200), connected(300), disconnected(300, 400)];
    const onlineEnd = [connected(100), disconnected(100, 200), connected(300)];
    for (const order of permutations(offlineEnd)) {
      const state = fresh();
      for (const event of order) applyEvents(state, [event], 1_000);
      expect(state.presence).toBe('offline');
      expect(state.session?.connectedAt).toBe(300);
    }
    for (const order of permutations(onlineEnd)) {
      const state = fresh();
      for (const event of order) applyEvents(state, [event], 1_000);
      expect(state.presence).toBe('online');
      expect(state.session).toEqual({ connectedAt: 300 });
    }
  });

  it('applies duplicates once', () => {
    const state = fresh();
    applyEvents(state, [connected(100), connected(100)], 100);
    applyEvents(state, [disconnected(100, 200), disconnected(100, 200)], 200);
    expect(state.counters).toMatchObject({ events: 4, duplicates: 2, sessionsStarted: 1, sessionsEnded: 1 });
    expect(state.presence).toBe('offline');
  });

  it('ignores the disconnect of a session that a newer one took over', () => {
    const state = fresh();
    applyEvents(state, [connected(100)], 100);
    applyEvents(state, [disconnected(100, 150, 'takenover')], 150);
    expect(state.presence).toBe('online');
    applyEvents(state, [connected(150)], 150);
    expect(state.presence).toBe('online');
    expect(state.counters.superseded).toBe(1);
  });

  it('takes a disconnect whose connect never arrived as a session that began and ended', () => {
    const state = fresh();
    applyEvents(state, [disconnected(100, 200, 'keepalive_timeout')], 250);
    expect(state.presence).toBe('offline');
    expect(state.session).toMatchObject({ connectedAt: 100, endedAt: 200, reason: 'keepalive_timeout' });
    applyEvents(state, [connected(100)], 260);
    expect(state.presence).toBe('offline');
  });
});

describe('offline alarm', () => {
  it('raises nothing when the device reconnects inside the grace period', () => {
    const state = fresh();
    applyEvents(state, [connected(0)], 0);
    applyEvents(state, [disconnected(0, 1_000)], 1_000);
    expect(nextDeadline(state)).toBe(2_000);
    applyEvents(state, [connected(1_500)], 1_500);
    expect(nextDeadline(state)).toBeNull();
    expect(fireDueTimers(state, 10_000)).toEqual([]);
    expect(state.alarm).toBeNull();
  });

  it('raises level 1 after the grace period and escalates at the steps after raising', () => {
    const state = fresh();
    applyEvents(state, [connected(0), disconnected(0, 1_000)], 1_000);
    expect(fireDueTimers(state, 1_999)).toEqual([]);
    expect(types(fireDueTimers(state, 2_000))).toEqual(['recordAlarm', 'notifyAlarm']);
    expect(state.alarm).toMatchObject({ kind: 'offline', level: 1, state: 'active', offlineSince: new Date(1_000).toISOString() });
    expect(nextDeadline(state)).toBe(4_000);
    fireDueTimers(state, 4_000);
    expect(state.alarm?.level).toBe(2);
    expect(nextDeadline(state)).toBe(7_000);
    fireDueTimers(state, 7_000);
    expect(state.alarm?.level).toBe(3);
    expect(nextDeadline(state)).toBeNull();
    expect(state.alarm?.changes.map((c) => c.change)).toEqual(['raised', 'escalated', 'escalated']);
  });

  it('clears the alarm on reconnect, recorded as cleared by reconnect', () => {
    const state = fresh();
    applyEvents(state, [connected(0), disconnected(0, 1_000)], 1_000);
    fireDueTimers(state, 2_000);
    const effects = applyEvents(state, [connected(5_000)], 5_000);
    expect(types(effects)).toEqual(['recordAlarm', 'notifyAlarm', 'applySubscriptions']);
    expect(state.alarm).toMatchObject({ state: 'cleared', clearedBy: 'reconnect', level: 1 });
    expect(openAlarmLevel(state)).toBe(0);
    expect(nextDeadline(state)).toBeNull();
  });

  it('stops escalating when acknowledged, and refuses a second acknowledgement', () => {
    const state = fresh();
    expect(acknowledgeRefusal(state)).toMatch(/no open alarm/);
    applyEvents(state, [connected(0), disconnected(0, 1_000)], 1_000);
    fireDueTimers(state, 2_000);
    expect(types(acknowledge(state, 'on it', 2_500))).toEqual(['recordAlarm', 'notifyAlarm']);
    expect(state.alarm).toMatchObject({ state: 'acknowledged', note: 'on it', level: 1 });
    expect(nextDeadline(state)).toBeNull();
    expect(fireDueTimers(state, 100_000)).toEqual([]);
    expect(acknowledgeRefusal(state)).toMatch(/already acknowledged/);
    expect(openAlarmLevel(state)).toBe(1);
  });

  it('raises nothing again after a manual clear until the next disconnect', () => {
    const state = fresh();
    applyEvents(state, [connected(0), disconnected(0, 1_000)], 1_000);
    fireDueTimers(state, 2_000);
    clearByOperator(state, 'known outage', 3_000);
    expect(state.alarm).toMatchObject({ state: 'cleared', clearedBy: 'operator', note: 'known outage' });
    expect(fireDueTimers(state, 100_000)).toEqual([]);
    applyEvents(state, [connected(200_000), disconnected(200_000, 201_000)], 201_000);
    fireDueTimers(state, 202_000);
    expect(state.alarm).toMatchObject({ state: 'active', level: 1, kind: 'offline' });
  });

  it('turns many disconnects inside the window into one flapping alarm, not offline alarms', () => {
    const state = fresh();
    const raised: PresenceEffect[] = [];
    let t = 0;
    for (let i = 0; i < 10; i++) {
      raised.push(...applyEvents(state, [connected(t), disconnected(t, t + 100)], t + 100));
      raised.push(...fireDueTimers(state, t + 500));
      t += 500;
    }
    const raisedAlarms = raised.filter((e) => e.type === 'notifyAlarm' && e.change === 'raised');
    expect(raisedAlarms).toHaveLength(1);
    expect(state.alarm).toMatchObject({ kind: 'flapping', state: 'active' });
    // Staying offline does not add an offline alarm on top.
    fireDueTimers(state, t + 1_500);
    expect(state.counters.alarmsRaised).toBe(1);
  });

  it('clears a flapping alarm once the device has stayed online for a whole window', () => {
    const state = fresh();
    for (let i = 0; i < 4; i++) applyEvents(state, [connected(i * 10), disconnected(i * 10, i * 10 + 5)], i * 10 + 5);
    expect(state.alarm?.kind).toBe('flapping');
    applyEvents(state, [connected(100)], 100);
    expect(state.alarm?.state).toBe('active');
    fireDueTimers(state, 100 + 60_000);
    expect(state.alarm).toMatchObject({ state: 'cleared', clearedBy: 'stable' });
  });

  it('clears the alarm and raises nothing more for a deprovisioned device', () => {
    const state = fresh();
    applyEvents(state, [connected(0), disconnected(0, 1_000)], 1_000);
    fireDueTimers(state, 2_000);
    updatePolicy(state, { ...policy, monitored: false }, 3_000);
    expect(state.alarm).toMatchObject({ state: 'cleared', clearedBy: 'deprovisioned' });
    applyEvents(state, [connected(4_000), disconnected(4_000, 5_000)], 5_000);
    expect(fireDueTimers(state, 100_000)).toEqual([]);
  });
});

describe('timers (each one started is a Temporal action)', () => {
  /**
   * Drives the machine the way the workflow does: batches at their times, and a timer per
   * timerToStart that fires at its time (re-armed then for whatever is still ahead). Returns the
   * timers started.
   */
  function runWithTimers(state: PresenceState, batches: { at: number; events: PresenceEvent[] }[], until: number): number {
    let running: number | null = null;
    let started = 0;
    const arm = (): void => {
      const at = timerToStart(nextDeadline(state), running);
      if (at === null) return;
      running = at;
      started++;
    };
    const fireUntil = (now: number): void => {
      while (running !== null && running <= now) {
        const firedAt: number = running;
        running = null;
        fireDueTimers(state, firedAt);
        arm();
      }
    };
    for (const { at, events } of batches) {
      fireUntil(at);
      applyEvents(state, events, at);
      fireDueTimers(state, at);
      arm();
    }
    fireUntil(until);
    return started;
  }

  it('starts none for a bounce resolved in one batch', () => {
    const state = fresh();
    applyEvents(state, [connected(0)], 0);
    const effects = applyEvents(state, [disconnected(0, 1_000), connected(1_200)], 1_300);
    expect(types(effects)).toEqual(['applySubscriptions']);
    expect(nextDeadline(state)).toBeNull();
    expect(timerToStart(nextDeadline(state), null)).toBeNull();
  });

  it('keeps a running timer that fires no later than the deadline', () => {
    expect(timerToStart(null, null)).toBeNull();
    expect(timerToStart(5_000, null)).toBe(5_000);
    expect(timerToStart(5_000, 3_000)).toBeNull();
    expect(timerToStart(5_000, 5_000)).toBeNull();
    expect(timerToStart(2_000, 3_000)).toBe(2_000);
  });

  it('raises the offline alarm at the end of the grace period of the last disconnect, with one timer for bounces that follow each other', () => {
    const state = fresh();
    // Reconnects within the grace period (1 s), one every 400 ms: the first grace timer is kept.
    const batches = [{ at: 0, events: [connected(0)] }];
    for (let i = 0; i < 2; i++) {
      batches.push({ at: 400 * i + 100, events: [disconnected(i === 0 ? 0 : 400 * i - 100, 400 * i + 100)] });
      batches.push({ at: 400 * i + 300, events: [connected(400 * i + 300)] });
    }
    batches.push({ at: 1_500, events: [disconnected(700, 1_500)] });
    const timers = runWithTimers(state, batches, 2_600);
    expect(state.alarm).toMatchObject({ kind: 'offline', level: 1, raisedAt: new Date(2_500).toISOString() });
    // The first grace timer (1,100) serves the first two disconnects and fires with nothing due;
    // the last disconnect's (2,500) raises; then the first escalation's (4,500).
    expect(timers).toBe(3);
  });

  it('clears a flapping alarm a whole window after the last connect, with one timer for the window instead of one per connect', () => {
    const state = fresh();
    const batches: { at: number; events: PresenceEvent[] }[] = [];
    // 30 bounces 2 s apart, the disconnect and the reconnect in separate signals.
    for (let i = 0; i < 30; i++) {
      const t = 2_000 * i;
      batches.push({ at: t, events: [connected(t)] });
      batches.push({ at: t + 100, events: [disconnected(t, t + 100)] });
    }
    const last = 2_000 * 30;
    batches.push({ at: last, events: [connected(last)] });
    const timers = runWithTimers(state, batches, last + 120_000);
    expect(state.alarm).toMatchObject({ kind: 'flapping', state: 'cleared', clearedBy: 'stable', clearedAt: new Date(last + 60_000).toISOString() });
    expect(state.alarm?.changes.map((c) => c.change)).toEqual(['raised', 'escalated', 'escalated', 'cleared']);
    // Before the alarm: the grace timers of the first 3 disconnects. Then the 2 escalations and
    // the flapping clear, which the connects push later: its first timer (2 s after the first
    // connect) fires early, and so on, one timer per window, not one per connect (30).
    expect(timers).toBeLessThanOrEqual(3 + 2 + 3);
  });
});

describe('bounded flap window', () => {
  /** The rule the bounded window must agree with: every session end kept, counted inside the window before the newest. */
  const unboundedFlapping = (ends: number[], threshold: number, windowMs: number): boolean => {
    const newest = Math.max(...ends);
    return ends.filter((t) => t > newest - windowMs).length >= threshold;
  };

  /** A small deterministic generator (mulberry32), so a failure names a reproducible case. */
  const random = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };

  it('answers as if every session end were kept, for ends arriving in any order', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const threshold = 2 + Math.floor(next() * 6);
      const windowMs = 1_000 + Math.floor(next() * 5_000);
      const latest: number[] = [];
      const all: number[] = [];
      for (let i = 0; i < 60; i++) {
        // Mostly forward in time, sometimes late (an older session's end delivered after newer ones).
        const at = Math.floor(i * 400 * next() + (next() < 0.2 ? -3_000 * next() : 0));
        all.push(at);
        noteSessionEnd(latest, at, threshold);
        expect(latest.length, `seed ${seed}`).toBeLessThanOrEqual(threshold);
        expect(isFlapping(latest, threshold, windowMs), `seed ${seed}, end ${i}`).toBe(unboundedFlapping(all, threshold, windowMs));
      }
    }
  });

  it('keeps the state of a 50,000-event burst bounded, raises one flapping alarm, and ends on the newest session', () => {
    const state = fresh();
    const events: PresenceEvent[] = [];
    for (let i = 0; i < 25_000; i++) events.push(connected(i * 10), disconnected(i * 10, i * 10 + 5));
    // The burst ends online: a last session with no disconnect.
    events.push(connected(250_000));
    // Redelivered copies and a shuffled order change nothing.
    events.push(...events.slice(0, 500));
    events.reverse();

    const effects = applyEvents(state, events, 300_000);
    expect(state.presence).toBe('online');
    expect(state.session).toEqual({ connectedAt: 250_000 });
    expect(state.alarm).toMatchObject({ kind: 'flapping', state: 'active' });
    expect(effects.filter((e) => e.type === 'notifyAlarm' && e.change === 'raised')).toHaveLength(1);
    expect(types(effects).filter((t) => t === 'applySubscriptions')).toHaveLength(1);
    expect(state.counters).toMatchObject({ events: events.length, duplicates: 500, coalesced: 50_001 - MAX_EVENTS_APPLIED });
    expect(state.recentDisconnects.length).toBeLessThanOrEqual(policy.flapThreshold);
    expect(state.seenKeys.length).toBeLessThanOrEqual(200);
    // What continue-as-new carries stays small whatever the burst.
    expect(JSON.stringify(state).length).toBeLessThan(40_000);
  });

  it('applies the newest session even when more than the limit of later events follow its connect', () => {
    const state = fresh();
    const events: PresenceEvent[] = [connected(1_000)];
    // Older sessions whose disconnects are reported later than the newest connect (clock skew, late delivery).
    for (let i = 0; i < MAX_EVENTS_APPLIED + 200; i++) events.push(disconnected(i / 2, 2_000 + i));
    applyEvents(state, events, 5_000);
    expect(state.presence).toBe('online');
    expect(state.session).toEqual({ connectedAt: 1_000 });
  });

  it('counts the session ends of a coalesced burst toward flapping', () => {
    const state = fresh();
    // A tight cluster of session ends, oldest in the batch, then more takeover notices (no session end) than the limit.
    const events: PresenceEvent[] = [];
    for (let i = 0; i < policy.flapThreshold; i++) events.push(disconnected(i * 10, i * 10 + 5));
    for (let i = 0; i < MAX_EVENTS_APPLIED; i++) events.push({ ...disconnected(i / 1_000, 100 + i, 'takenover'), key: `t|${i}` });
    const effects = applyEvents(state, events, 2_000);
    expect(state.counters.coalesced).toBe(events.length - MAX_EVENTS_APPLIED);
    expect(state.alarm).toMatchObject({ kind: 'flapping', state: 'active' });
    expect(effects.filter((e) => e.type === 'notifyAlarm' && e.change === 'raised')).toHaveLength(1);
  });
});

describe('reconciliation observations', () => {
  const observed = (online: boolean, observedAt: number, connectedAt?: number): PresenceEvent => ({
    kind: 'observed',
    key: `o|${observedAt}|${online}`,
    online,
    observedAt,
    ...(connectedAt !== undefined ? { connectedAt } : {}),
  });

  it('ends a session EMQX no longer lists (a dropped disconnect), and the late disconnect changes nothing', () => {
    const state = fresh();
    applyEvents(state, [connected(100)], 100);
    applyEvents(state, [observed(false, 5_000)], 5_000);
    expect(state.presence).toBe('offline');
    expect(state.offlineAlarmDueAt).toBe(6_000);
    applyEvents(state, [disconnected(100, 4_000)], 5_100);
    expect(state.presence).toBe('offline');
  });

  it('does not end a session that began after the listing', () => {
    const state = fresh();
    applyEvents(state, [connected(6_000)], 6_000);
    applyEvents(state, [observed(false, 5_000)], 6_100);
    expect(state.presence).toBe('online');
  });

  it('starts the session EMQX lists as connected (a dropped connect) and re-applies subscriptions', () => {
    const state = fresh();
    applyEvents(state, [connected(100), disconnected(100, 200)], 200);
    expect(types(applyEvents(state, [observed(true, 5_000, 3_000)], 5_000))).toEqual(['applySubscriptions']);
    expect(state.presence).toBe('online');
    applyEvents(state, [connected(3_000)], 5_100);
    expect(state.counters.sessionsStarted).toBe(2);
  });
});
