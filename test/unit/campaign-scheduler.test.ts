import { describe, expect, it } from 'vitest';
import { CampaignRequest, type CampaignSettings, type Rollout, type ScheduleSettings } from '../../src/domain/schemas/campaign';
import { emptyCounts, type ChunkReport, type TargetCounts } from '../../src/domain/campaign';
import {
  batchDone,
  batchFailed,
  beginBatch,
  beginWakeLookup,
  cancel,
  cancelRefusal,
  carryForNextRun,
  changedSince,
  decide,
  deviceOnline,
  mark,
  newScheduler,
  pause,
  pauseRefusal,
  progress,
  resume,
  resumeRefusal,
  SIGNALS_PER_RUN,
  targetsPrepared,
  wakeLookupDone,
  windowMemo,
  type BatchOrder,
  type Decision,
  type RunLimits,
  type Scheduler,
} from '../../src/domain/campaign-scheduler';

/** The campaign workflow's rules on their own: no Temporal, time passed in explicitly. */

const LIMITS: RunLimits = { continueAsNewSuggested: false, batchesPerRun: 1_000 };

function settings(options: { rollout?: Partial<Rollout>; deadlineMs?: number; abort?: CampaignSettings['abort']; schedule?: ScheduleSettings } = {}): CampaignSettings {
  const request = CampaignRequest.parse({
    targets: { list: [{ clientId: 'x' }] },
    message: { topic: 't', payload: { format: 'text', text: 'p' } },
    rollout: { batchSize: 100, concurrency: 2, ...options.rollout },
  });
  return {
    campaignId: 'c1',
    transport: 'rest',
    rollout: request.rollout,
    policy: { retry: request.retry, offline: request.offline },
    abort: options.abort ?? [],
    ...(options.deadlineMs !== undefined ? { deadlineMs: options.deadlineMs } : {}),
    ...(options.schedule ? { schedule: options.schedule } : {}),
  };
}

/** A prepared scheduler of `total` targets in chunks of `chunkSize`, started at time `at` (default 0). */
function scheduler(total: number, chunkSize: number, options: Parameters<typeof settings>[0] = {}, at = 0): Scheduler {
  const s = newScheduler(settings(options), at);
  targetsPrepared(s, { total, chunkCount: Math.ceil(total / chunkSize), chunkSize }, at);
  return s;
}

/** A chunk's report: `counts` over the chunk's `size` targets, the rest pending. */
function report(order: BatchOrder, size: number, outcome: Partial<TargetCounts>, nextDueAt: number | null, published = order.limit): ChunkReport {
  const counts = { ...emptyCounts(size), ...outcome };
  counts.pending = size - counts.delivered - counts.offline - counts.failed - counts.timedOut - counts.cancelled;
  const attempted = size - (counts.pending - counts.waiting);
  return { chunk: order.chunk, counts, nextDueAt, published, delivered: outcome.delivered ?? 0, attempted, attempts: attempted, transientErrors: 0 };
}

/** Decides and launches until the scheduler wants something else; returns the orders and that decision. */
function launchAll(s: Scheduler, now: number): { orders: BatchOrder[]; next: Decision } {
  const orders: BatchOrder[] = [];
  for (;;) {
    const next = decide(s, now, LIMITS);
    if (next.type !== 'launchBatch') return { orders, next };
    orders.push(beginBatch(s, next.chunk, now));
  }
}

describe('campaign scheduler: batches', () => {
  it('launches one batch per chunk up to the concurrency, then waits for a completion', () => {
    const s = scheduler(500, 100);
    const { orders, next } = launchAll(s, 0);
    // No rate limit: a few bulk requests' worth per batch (BULK_REQUESTS_PER_BATCH of the batch size).
    expect(orders.map((o) => [o.chunk, o.limit, o.sequence])).toEqual([
      [0, 500, 1],
      [1, 500, 2],
    ]);
    expect(next).toEqual({ type: 'wait', until: null, onWake: true, onCompletion: 'any' });

    const seen = mark(s);
    expect(changedSince(s, seen, next, LIMITS)).toBe(false);
    batchDone(s, orders[0] as BatchOrder, report(orders[0] as BatchOrder, 100, { delivered: 100 }, null), 10);
    expect(changedSince(s, seen, next, LIMITS)).toBe(true);
    expect(decide(s, 10, LIMITS)).toEqual({ type: 'launchBatch', chunk: 2 });
  });

  it('finishes as completed once every chunk reports all targets final, with nothing left to end', () => {
    const s = scheduler(150, 100);
    const { orders } = launchAll(s, 0);
    batchDone(s, orders[0] as BatchOrder, report(orders[0] as BatchOrder, 100, { delivered: 99, failed: 1 }, null), 5);
    expect(decide(s, 5, LIMITS).type).toBe('wait');
    batchDone(s, orders[1] as BatchOrder, report(orders[1] as BatchOrder, 50, { delivered: 50 }, null), 6);
    expect(decide(s, 6, LIMITS)).toEqual({ type: 'finish', state: 'completed', ending: 'expire', openChunks: [] });
    expect(progress(s, 6)).toMatchObject({ state: 'running', counts: { total: 150, delivered: 149, failed: 1, pending: 0 }, batches: 2 });
  });

  it('waits until the earliest open target is due when nothing is ready', () => {
    const s = scheduler(100, 100);
    const [order] = launchAll(s, 0).orders as [BatchOrder];
    batchDone(s, order, report(order, 100, { delivered: 60, waiting: 40 }, 60_000), 1_000);
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'wait', until: 60_000, onWake: true, onCompletion: 'any' });
    expect(decide(s, 60_000, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
  });

  it('aborts when a batch fails for good, keeping the reconnected positions it carried, and finishes once idle', () => {
    const s = scheduler(200, 100);
    const [first, second] = launchAll(s, 0).orders as [BatchOrder, BatchOrder];
    batchFailed(s, { ...first, wake: [3] }, 'EMQX answered 401');
    expect(s.carry.chunks[0]?.wake).toEqual([3]);
    expect(decide(s, 1, LIMITS)).toEqual({ type: 'drain' });
    expect(progress(s, 1)).toMatchObject({ state: 'aborted', reason: 'publishing failed: EMQX answered 401' });
    batchDone(s, second, report(second, 100, { delivered: 100 }, null), 2);
    expect(decide(s, 2, LIMITS)).toEqual({ type: 'finish', state: 'aborted', reason: 'publishing failed: EMQX answered 401', ending: 'cancel', openChunks: [0] });
  });

  it('aborts when an abort criterion is met by the reported counts', () => {
    const s = scheduler(100, 50, { abort: [{ failureType: 'failed', thresholdPercent: 50, minExecuted: 10 }] });
    const [first] = launchAll(s, 0).orders as [BatchOrder];
    batchDone(s, first, report(first, 50, { delivered: 20, failed: 30 }, null), 1);
    expect(s.ending).toMatchObject({ state: 'aborted', reason: expect.stringContaining('30 of 50 executed targets ended failed') });
  });
});

describe('campaign scheduler: rollout rate and ramp', () => {
  it('spaces batches at maximumPerMinute: one second of targets per batch, the next slot a batch later', () => {
    const s = scheduler(100, 100, { rollout: { maximumPerMinute: 120 } });
    const [order] = launchAll(s, 0).orders as [BatchOrder];
    expect(order.limit).toBe(2);
    // 2 targets at 120 a minute: the next slot is 1 s on; until then a finished batch starts nothing.
    batchDone(s, order, report(order, 100, { delivered: 2 }, 0), 100);
    const next = decide(s, 100, LIMITS);
    expect(next).toEqual({ type: 'wait', until: 1_000, onWake: true, onCompletion: 'whenIdle' });
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
  });

  it('gives back the time of targets a batch did not publish to', () => {
    const s = scheduler(100, 100, { rollout: { maximumPerMinute: 60 } });
    const [order] = launchAll(s, 0).orders as [BatchOrder];
    expect(s.carry.pacer.nextSlotAt).toBe(1_000);
    batchDone(s, order, report(order, 100, {}, 0, 0), 10);
    expect(s.carry.pacer.nextSlotAt).toBe(10);
  });

  it('ramps the rate by the factor each time enough targets succeeded, up to the maximum', () => {
    const s = scheduler(1_000, 1_000, {
      rollout: { maximumPerMinute: 480, exponentialRate: { baseRatePerMinute: 60, incrementFactor: 2, numberOfSucceededTargets: 2 } },
    });
    expect(progress(s, 0).rateLimitPerMinute).toBe(60);
    const [first] = launchAll(s, 0).orders as [BatchOrder];
    batchDone(s, first, report(first, 1_000, { delivered: 1 }, 0), 1_000);
    expect(s.carry.pacer.ratePerMinute).toBe(60);
    const second = beginBatch(s, 0, 1_000);
    batchDone(s, second, report(second, 1_000, { delivered: 4 }, 0), 2_000);
    // 4 delivered: two steps of 2 -> 60 * 2 * 2.
    expect(s.carry.pacer.ratePerMinute).toBe(240);
    const third = beginBatch(s, 0, 2_000);
    expect(third.limit).toBe(4);
    batchDone(s, third, report(third, 1_000, { delivered: 100 }, 0), 3_000);
    expect(progress(s, 3_000).rateLimitPerMinute).toBe(480);
  });
});

describe('campaign scheduler: deadline, pause, cancel', () => {
  it('sets a timer for the deadline when idle and expires the open chunks when it passes', () => {
    const s = scheduler(200, 100, { deadlineMs: 300_000 });
    const [a, b] = launchAll(s, 0).orders as [BatchOrder, BatchOrder];
    batchDone(s, a, report(a, 100, { delivered: 100 }, null), 1);
    batchDone(s, b, report(b, 100, { delivered: 50, waiting: 50 }, 600_000), 2);
    expect(decide(s, 2, LIMITS)).toEqual({ type: 'wait', until: 300_000, onWake: true, onCompletion: 'any' });
    expect(decide(s, 300_000, LIMITS)).toEqual({ type: 'finish', state: 'completed', ending: 'expire', openChunks: [1] });
  });

  it('drains the batches in flight at the deadline before finishing', () => {
    const s = scheduler(100, 100, { deadlineMs: 1_000 });
    const [order] = launchAll(s, 0).orders as [BatchOrder];
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'drain' });
    batchDone(s, order, report(order, 100, { delivered: 10 }, 0), 1_500);
    expect(decide(s, 1_500, LIMITS)).toMatchObject({ type: 'finish', openChunks: [0] });
  });

  it('holds publishing while paused, waking only for control, finished batches and the deadline; resume goes on', () => {
    const s = scheduler(100, 100, { deadlineMs: 3_600_000 });
    pause(s, 5);
    expect(pauseRefusal(s)).toBe('the campaign is already paused');
    const waiting = decide(s, 5, LIMITS);
    expect(waiting).toEqual({ type: 'wait', until: 3_600_000, onWake: false, onCompletion: 'any' });
    const seen = mark(s);
    deviceOnline(s, 'dev-1');
    expect(changedSince(s, seen, waiting, LIMITS)).toBe(false);
    expect(progress(s, 10)).toMatchObject({ state: 'paused', pausedAt: new Date(5).toISOString() });

    resume(s);
    expect(changedSince(s, seen, waiting, LIMITS)).toBe(true);
    expect(resumeRefusal(s)).toBe('the campaign is not paused');
    // The reconnect collected while paused is looked up first.
    expect(decide(s, 10, LIMITS)).toEqual({ type: 'lookUpWoken' });
  });

  it('a pause before the targets are prepared holds from the first batch', () => {
    const s = newScheduler(settings(), 0);
    pause(s, 1);
    targetsPrepared(s, { total: 10, chunkCount: 1, chunkSize: 10 }, 2);
    expect(decide(s, 2, LIMITS).type).toBe('wait');
    expect(progress(s, 2).state).toBe('paused');
  });

  it('cancels: validates the reason, drains, then ends the open chunks as cancelled', () => {
    const s = scheduler(200, 100);
    expect(cancelRefusal(s, '  ')).toBe('a cancel needs a reason');
    expect(cancelRefusal(s, 'x'.repeat(3_000))).toMatch(/at most 2028/);
    const [a, b] = launchAll(s, 0).orders as [BatchOrder, BatchOrder];
    cancel(s, ' operator said so ');
    expect(cancelRefusal(s, 'again')).toBe('the campaign is already ending');
    expect(pauseRefusal(s)).toMatch(/ending/);
    expect(decide(s, 1, LIMITS)).toEqual({ type: 'drain' });
    batchDone(s, a, report(a, 100, { delivered: 100 }, null), 2);
    batchDone(s, b, report(b, 100, { delivered: 40 }, 0), 3);
    expect(decide(s, 3, LIMITS)).toEqual({ type: 'finish', state: 'cancelled', reason: 'operator said so', ending: 'cancel', openChunks: [1] });
  });
});

describe('campaign scheduler: reconnects and runs', () => {
  it('looks reconnected devices up in batches and tries their targets in the chunk\'s next batch', () => {
    const s = scheduler(100, 100);
    const [order] = launchAll(s, 0).orders as [BatchOrder];
    batchDone(s, order, report(order, 100, { delivered: 90, waiting: 10 }, 600_000), 1);
    const waiting = decide(s, 1, LIMITS);
    const seen = mark(s);
    deviceOnline(s, 'dev-7');
    deviceOnline(s, 'dev-7');
    deviceOnline(s, 42);
    expect(changedSince(s, seen, waiting, LIMITS)).toBe(true);
    expect(decide(s, 2, LIMITS)).toEqual({ type: 'lookUpWoken' });
    expect(beginWakeLookup(s)).toEqual(['dev-7']);
    expect(decide(s, 2, LIMITS)).toEqual({ type: 'wait', until: 600_000, onWake: true, onCompletion: 'any' });
    wakeLookupDone(s, [{ chunk: 0, index: 7 }]);
    expect(decide(s, 3, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
    expect(beginBatch(s, 0, 3).wake).toEqual([7]);
  });

  it('continues as new when a run is due and nothing runs, draining first, carrying what the next run needs', () => {
    const s = scheduler(300, 100);
    const orders = launchAll(s, 0).orders;
    deviceOnline(s, 'dev-1');
    const due: RunLimits = { ...LIMITS, batchesPerRun: 2 };
    expect(decide(s, 1, due)).toEqual({ type: 'drain' });
    for (const order of orders) batchDone(s, order, report(order, 100, { delivered: 100 }, null), 2);
    expect(decide(s, 2, due)).toEqual({ type: 'continueAsNew' });
    const carry = carryForNextRun(s);
    expect(carry).toMatchObject({ batches: 2, woken: ['dev-1'] });

    const next = newScheduler(settings(), 3, JSON.parse(JSON.stringify(carry)) as typeof carry);
    expect(next.prepared).toBe(true);
    expect(decide(next, 3, LIMITS)).toEqual({ type: 'lookUpWoken' });
    expect(progress(next, 3).counts).toMatchObject({ total: 300, delivered: 200, pending: 100 });
  });

  it('counts signals toward the run\'s limit', () => {
    const s = scheduler(10, 10);
    const waiting = decide(s, 0, LIMITS);
    const seen = mark(s);
    for (let i = 0; i < SIGNALS_PER_RUN; i++) deviceOnline(s, `d-${i % 3}`);
    pause(s, 0);
    expect(changedSince(s, seen, waiting, LIMITS)).toBe(true);
    expect(decide(s, 0, LIMITS)).toEqual({ type: 'continueAsNew' });
  });
});

describe('campaign scheduler: start time and maintenance windows', () => {
  const MIDNIGHT = Date.UTC(2026, 11, 7);
  const HOUR = 3_600_000;
  const iso = (t: number): string => new Date(t).toISOString();
  // Daily 01:00-03:00 UTC.
  const nightly: ScheduleSettings = { windows: ['0 1 * * * 2h'] };

  it('outside every window waits for the next opening, shown in the progress and the memo; inside it publishes', () => {
    const s = scheduler(300, 100, { schedule: nightly }, MIDNIGHT);
    expect(decide(s, MIDNIGHT, LIMITS)).toEqual({ type: 'wait', until: MIDNIGHT + HOUR, onWake: true, onCompletion: 'any' });
    expect(progress(s, MIDNIGHT)).toMatchObject({ state: 'running', waitingForWindow: { reason: 'window', opensAt: iso(MIDNIGHT + HOUR) } });
    expect(windowMemo(s, MIDNIGHT)).toBe(iso(MIDNIGHT + HOUR));

    const { orders } = launchAll(s, MIDNIGHT + HOUR);
    expect(orders.map((o) => o.chunk)).toEqual([0, 1]);
    const inside = progress(s, MIDNIGHT + HOUR);
    expect(inside.waitingForWindow).toBeUndefined();
    expect(inside.windowClosesAt).toBe(iso(MIDNIGHT + 3 * HOUR));
    expect(windowMemo(s, MIDNIGHT + HOUR)).toBeNull();
  });

  it('a window that closes lets the batches in flight finish and starts none until the next opening', () => {
    const s = scheduler(300, 100, { schedule: nightly }, MIDNIGHT);
    const [a, b] = launchAll(s, MIDNIGHT + HOUR).orders as [BatchOrder, BatchOrder];
    batchDone(s, a, report(a, 100, { delivered: 100 }, null), MIDNIGHT + 2 * HOUR);
    // Chunk 2 is ready, but the window closed at 03:00.
    const closed = MIDNIGHT + 3 * HOUR;
    const nextOpening = MIDNIGHT + 25 * HOUR;
    expect(decide(s, closed, LIMITS)).toEqual({ type: 'wait', until: nextOpening, onWake: true, onCompletion: 'any' });
    batchDone(s, b, report(b, 100, { delivered: 100 }, null), closed + 1);
    expect(decide(s, closed + 1, LIMITS)).toEqual({ type: 'wait', until: nextOpening, onWake: true, onCompletion: 'any' });
    expect(progress(s, closed + 1).waitingForWindow).toEqual({ reason: 'window', opensAt: iso(nextOpening) });
    expect(decide(s, nextOpening, LIMITS)).toEqual({ type: 'launchBatch', chunk: 2 });
  });

  it('waits for the start time; the deadline counts from it', () => {
    const startAt = MIDNIGHT + 5 * HOUR;
    const s = scheduler(100, 100, { schedule: { startAt }, deadlineMs: HOUR }, MIDNIGHT);
    expect(s.carry.deadlineAt).toBe(startAt + HOUR);
    expect(decide(s, MIDNIGHT, LIMITS)).toEqual({ type: 'wait', until: startAt, onWake: true, onCompletion: 'any' });
    expect(progress(s, MIDNIGHT).waitingForWindow).toEqual({ reason: 'start-at', opensAt: iso(startAt) });
    expect(decide(s, startAt, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
    expect(progress(s, startAt).waitingForWindow).toBeUndefined();
  });

  it('with a start time and windows, waits for the first window open at or after the start time', () => {
    const s = scheduler(100, 100, { schedule: { startAt: MIDNIGHT + 5 * HOUR, ...nightly } }, MIDNIGHT);
    const opening = MIDNIGHT + 25 * HOUR;
    // One timer, for the opening itself.
    expect(decide(s, MIDNIGHT, LIMITS)).toEqual({ type: 'wait', until: opening, onWake: true, onCompletion: 'any' });
    expect(progress(s, MIDNIGHT).waitingForWindow).toEqual({ reason: 'start-at', opensAt: iso(opening) });
    expect(decide(s, MIDNIGHT + 5 * HOUR, LIMITS)).toEqual({ type: 'wait', until: opening, onWake: true, onCompletion: 'any' });
    expect(progress(s, MIDNIGHT + 5 * HOUR).waitingForWindow).toEqual({ reason: 'window', opensAt: iso(opening) });
    expect(decide(s, opening, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
  });

  it('a deadline that passes while waiting for a window expires the open targets', () => {
    const s = scheduler(100, 100, { schedule: nightly, deadlineMs: 4 * HOUR }, MIDNIGHT);
    const [order] = launchAll(s, MIDNIGHT + HOUR).orders as [BatchOrder];
    batchDone(s, order, report(order, 100, { delivered: 40, waiting: 60 }, MIDNIGHT + 3.5 * HOUR), MIDNIGHT + 2 * HOUR);
    // After 03:00 the next opening (tomorrow 01:00) is later than the deadline (04:00).
    expect(decide(s, MIDNIGHT + 3 * HOUR, LIMITS)).toEqual({ type: 'wait', until: MIDNIGHT + 4 * HOUR, onWake: true, onCompletion: 'any' });
    expect(decide(s, MIDNIGHT + 4 * HOUR, LIMITS)).toEqual({ type: 'finish', state: 'completed', ending: 'expire', openChunks: [0] });
  });

  it('pause, resume and cancel work while waiting for a window', () => {
    const s = scheduler(100, 100, { schedule: nightly }, MIDNIGHT);
    pause(s, MIDNIGHT);
    expect(decide(s, MIDNIGHT, LIMITS)).toEqual({ type: 'wait', until: null, onWake: false, onCompletion: 'any' });
    const paused = progress(s, MIDNIGHT);
    expect(paused.state).toBe('paused');
    expect(paused.waitingForWindow).toBeUndefined();
    expect(windowMemo(s, MIDNIGHT)).toBeNull();
    // Paused through the window: nothing starts in it.
    expect(decide(s, MIDNIGHT + 2 * HOUR, LIMITS).type).toBe('wait');

    resume(s);
    expect(decide(s, MIDNIGHT + 4 * HOUR, LIMITS)).toEqual({ type: 'wait', until: MIDNIGHT + 25 * HOUR, onWake: true, onCompletion: 'any' });
    cancel(s, 'not tonight');
    expect(decide(s, MIDNIGHT + 4 * HOUR, LIMITS)).toEqual({ type: 'finish', state: 'cancelled', reason: 'not tonight', ending: 'cancel', openChunks: [0] });
    expect(progress(s, MIDNIGHT + 4 * HOUR).waitingForWindow).toBeUndefined();
  });

  it('carries the schedule across continue-as-new through the settings', () => {
    const s = scheduler(100, 100, { schedule: nightly }, MIDNIGHT);
    const next = newScheduler(settings({ schedule: nightly }), MIDNIGHT + 4 * HOUR, JSON.parse(JSON.stringify(carryForNextRun(s))) as ReturnType<typeof carryForNextRun>);
    expect(decide(next, MIDNIGHT + 4 * HOUR, LIMITS)).toMatchObject({ type: 'wait', until: MIDNIGHT + 25 * HOUR });
  });
});

describe('campaign request: schedule', () => {
  const base = { targets: { list: [{ clientId: 'x' }] }, message: { topic: 't', payload: { format: 'text', text: 'p' } } };
  const issues = (schedule: unknown): string[] => {
    const parsed = CampaignRequest.safeParse({ ...base, schedule });
    return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('accepts a start time with a zone and windows; refuses bad ones naming the field and the reason', () => {
    expect(issues({ startAt: '2026-12-08T01:00:00Z', windows: ['0 1 * * * 3h', '30 22 * * 1-5 90m'] })).toEqual([]);
    expect(issues({ startAt: '2026-12-08 01:00' })).toEqual([expect.stringMatching(/^schedule\.startAt: must be an ISO 8601 time with a time zone/)]);
    expect(issues({ startAt: '2026-12-08T01:00:00' })).toEqual([expect.stringMatching(/^schedule\.startAt: must be an ISO 8601 time with a time zone/)]);
    expect(issues({ startAt: '2026-12-08T03:00:00+02:00' })).toEqual([]);
    expect(issues({ windows: ['0 1 * * * 24h'] })).toEqual([expect.stringMatching(/^schedule\.windows\.0: window "0 1 \* \* \* 24h": duration "24h" must be 1 to 1430 minutes/)]);
    expect(issues({ windows: ['0 1 * *'] })).toEqual([expect.stringMatching(/^schedule\.windows\.0: .*expected/)]);
    expect(issues({ windows: ['0 1 31 2 * 1h'] })).toEqual([expect.stringMatching(/^schedule\.windows: no window ever opens/)]);
    expect(issues({ windows: [] })).toEqual([expect.stringMatching(/^schedule\.windows: give at least one window/)]);
  });
});
