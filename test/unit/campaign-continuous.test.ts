import { describe, expect, it } from 'vitest';
import { CampaignRequest, DEFAULT_RESCAN_INTERVAL_MS, type CampaignSettings } from '../../src/domain/schemas/campaign';
import { emptyCounts } from '../../src/domain/campaign';
import { matchesSelector, selectorFilter } from '../../src/domain/campaign-selector';
import {
  batchDone,
  beginBatch,
  beginJoin,
  cancel,
  carryForNextRun,
  close,
  closeRefusal,
  decide,
  devicesJoined,
  JOIN_BATCH,
  joinDone,
  newScheduler,
  pause,
  progress,
  RESCAN_OVERLAP_MS,
  resume,
  targetsPrepared,
  type RunLimits,
  type Scheduler,
} from '../../src/domain/campaign-scheduler';

/** Continuous campaigns in the scheduler (src/domain/campaign-scheduler.ts), no Temporal: time passed in. */

const LIMITS: RunLimits = { continueAsNewSuggested: false, batchesPerRun: 1_000 };
const RESCAN_MS = 60_000;

function settings(continuous = true): CampaignSettings {
  const request = CampaignRequest.parse({
    targets: { selector: { tag: 'north' } },
    message: { topic: 't', payload: { format: 'text', text: 'p' } },
    rollout: { batchSize: 100, concurrency: 2 },
  });
  return {
    campaignId: 'c1',
    transport: 'rest',
    rollout: request.rollout,
    policy: { retry: request.retry, offline: request.offline },
    abort: [],
    selector: { tag: 'north' },
    ...(continuous ? { continuous: { rescanMs: RESCAN_MS } } : {}),
  };
}

/** A prepared continuous scheduler with one chunk of `total` targets, every one delivered. */
function delivered(total: number, at = 0): Scheduler {
  const s = newScheduler(settings(), at);
  targetsPrepared(s, { total, chunkCount: 1, chunkSize: 100 }, at);
  const order = beginBatch(s, 0, at);
  batchDone(s, order, { chunk: 0, counts: { ...emptyCounts(total), pending: 0, delivered: total }, nextDueAt: null, published: total, delivered: total, attempted: total, attempts: total, transientErrors: 0 }, at);
  return s;
}

describe('continuous campaign scheduler', () => {
  it('stays open with every target final, waiting for joins or the next rescan; a non-continuous one finishes', () => {
    const s = delivered(2);
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'wait', until: RESCAN_MS, onWake: true, onCompletion: 'any' });
    expect(progress(s, 1_000)).toMatchObject({ state: 'running', continuous: 'open' });

    const plain = newScheduler(settings(false), 0);
    targetsPrepared(plain, { total: 0, chunkCount: 0, chunkSize: 100 }, 0);
    expect(decide(plain, 0, LIMITS).type).toBe('finish');
    expect(progress(plain, 0).continuous).toBeUndefined();
  });

  it('adds signalled devices to the last chunk while it has room, and publishes to them', () => {
    const s = delivered(2);
    devicesJoined(s, ['d3', 'd4', 'd3']);
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'joinTargets', rescan: false });
    const order = beginJoin(s, false, 1_000);
    expect(order).toEqual({ chunk: 0, size: 2, total: 2, clientIds: ['d3', 'd4'], startedAt: 1_000 });
    // One join at a time, and no batch on its chunk meanwhile; the campaign is not idle while it runs.
    expect(decide(s, 1_000, LIMITS).type).toBe('wait');
    joinDone(s, order, { size: 4, more: false });
    expect(progress(s, 1_000).counts).toMatchObject({ total: 4, delivered: 2, pending: 2 });
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'launchBatch', chunk: 0 });
  });

  it('starts a new chunk when the last one is full or has a batch in flight', () => {
    const full = delivered(JOIN_BATCH);
    devicesJoined(full, ['d']);
    const order = beginJoin(full, false, 0);
    expect(order).toMatchObject({ chunk: 1, size: 0, total: JOIN_BATCH });
    joinDone(full, order, { size: 1, more: false });
    expect(full.carry.chunks.map((c) => c.counts.total)).toEqual([JOIN_BATCH, 1]);
    expect(decide(full, 0, LIMITS)).toEqual({ type: 'launchBatch', chunk: 1 });

    const busy = newScheduler(settings(), 0);
    targetsPrepared(busy, { total: 1, chunkCount: 1, chunkSize: 100 }, 0);
    beginBatch(busy, 0, 0);
    devicesJoined(busy, ['d']);
    expect(decide(busy, 0, LIMITS)).toEqual({ type: 'joinTargets', rescan: false });
    expect(beginJoin(busy, false, 0)).toMatchObject({ chunk: 1, size: 0 });
  });

  it('rescans on its interval from the last rescan minus an overlap; a rescan with more goes on at once', () => {
    const s = delivered(1);
    expect(decide(s, RESCAN_MS, LIMITS)).toEqual({ type: 'joinTargets', rescan: true });
    const first = beginJoin(s, true, RESCAN_MS);
    expect(first).toMatchObject({ chunk: 0, size: 1, since: -RESCAN_OVERLAP_MS });
    expect(first.clientIds).toBeUndefined();
    joinDone(s, first, { size: 1, more: true });
    // Not advanced: the rest of what it found comes next.
    expect(decide(s, RESCAN_MS + 1, LIMITS)).toEqual({ type: 'joinTargets', rescan: true });
    const second = beginJoin(s, true, RESCAN_MS + 1);
    expect(second.since).toBe(-RESCAN_OVERLAP_MS);
    joinDone(s, second, { size: 4, more: false });
    expect(s.carry.continuous).toMatchObject({ lastScanAt: RESCAN_MS + 1, scanFrom: RESCAN_MS + 1 - RESCAN_OVERLAP_MS });
    expect(progress(s, RESCAN_MS + 1).counts.total).toBe(4);
  });

  it('a failed join keeps its devices for the next one', () => {
    const s = delivered(1);
    devicesJoined(s, ['d2']);
    const order = beginJoin(s, false, 5);
    joinDone(s, order, null);
    expect(decide(s, 6, LIMITS)).toEqual({ type: 'joinTargets', rescan: false });
    expect(beginJoin(s, false, 6).clientIds).toEqual(['d2']);
  });

  it('close: refused when not continuous or closed already; drops pending joins, stops rescans and completes', () => {
    const plain = newScheduler(settings(false), 0);
    expect(closeRefusal(plain)).toMatch(/not continuous/);
    const s = delivered(1);
    devicesJoined(s, ['late']);
    expect(closeRefusal(s)).toBeNull();
    close(s);
    expect(closeRefusal(s)).toMatch(/already closed/);
    expect(progress(s, 0).continuous).toBe('closed');
    devicesJoined(s, ['later']);
    expect(decide(s, RESCAN_MS * 10, LIMITS)).toMatchObject({ type: 'finish', state: 'completed' });
  });

  it('close waits for the targets in flight before completing', () => {
    const s = newScheduler(settings(), 0);
    targetsPrepared(s, { total: 1, chunkCount: 1, chunkSize: 100 }, 0);
    const order = beginBatch(s, 0, 0);
    close(s);
    expect(decide(s, 1, LIMITS).type).toBe('wait');
    batchDone(s, order, { chunk: 0, counts: { ...emptyCounts(1), pending: 0, delivered: 1 }, nextDueAt: null, published: 1, delivered: 1, attempted: 1, attempts: 1, transientErrors: 0 }, 1);
    expect(decide(s, 2, LIMITS)).toMatchObject({ type: 'finish', state: 'completed' });
  });

  it('joins nothing while paused; cancel ends it like any campaign', () => {
    const s = delivered(1);
    pause(s, 0);
    devicesJoined(s, ['d2']);
    expect(decide(s, RESCAN_MS * 2, LIMITS).type).toBe('wait');
    resume(s);
    expect(decide(s, RESCAN_MS * 2, LIMITS)).toEqual({ type: 'joinTargets', rescan: false });
    cancel(s, 'stop');
    expect(decide(s, RESCAN_MS * 2, LIMITS)).toMatchObject({ type: 'finish', state: 'cancelled' });
  });

  it('starts no join while a run is due: it continues as new first, carrying the joins', () => {
    const s = delivered(1);
    devicesJoined(s, ['d2']);
    const due = { ...LIMITS, continueAsNewSuggested: true };
    expect(decide(s, 10, due)).toEqual({ type: 'continueAsNew' });
    expect(carryForNextRun(s).continuous?.pending).toEqual(['d2']);
  });

  it('ends at its deadline while open, as any campaign', () => {
    const s = newScheduler({ ...settings(), deadlineMs: 3_600_000 }, 0);
    targetsPrepared(s, { total: 0, chunkCount: 0, chunkSize: 100 }, 0);
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'wait', until: RESCAN_MS, onWake: true, onCompletion: 'any' });
    expect(decide(s, 3_600_000, LIMITS)).toMatchObject({ type: 'finish', state: 'completed', ending: 'expire' });
  });

  it('continues as new when its run is due while it waits, carrying the pending joins and the rescan state', () => {
    const s = delivered(1);
    devicesJoined(s, ['d2']);
    pause(s, 0);
    expect(decide(s, 10, { ...LIMITS, continueAsNewSuggested: true })).toEqual({ type: 'continueAsNew' });
    const carry = carryForNextRun(s);
    expect(carry.continuous).toEqual({ closed: false, scanFrom: -RESCAN_OVERLAP_MS, lastScanAt: 0, pending: ['d2'] });
    const next = newScheduler(settings(), 20, JSON.parse(JSON.stringify(carry)) as typeof carry);
    resume(next);
    expect(decide(next, 20, LIMITS)).toEqual({ type: 'joinTargets', rescan: false });
  });
});

describe('continuous campaign request and selector', () => {
  const base = { message: { topic: 't', payload: { format: 'text', text: 'p' } } };

  it('takes true or a rescan interval with a selector; refuses it with a list, naming the field', () => {
    expect(CampaignRequest.parse({ ...base, targets: { selector: { tag: 'a' } }, continuous: true }).continuous).toEqual({ rescanIntervalMs: DEFAULT_RESCAN_INTERVAL_MS });
    expect(CampaignRequest.parse({ ...base, targets: { selector: { tag: 'a' } }, continuous: { rescanIntervalMs: 2_000 } }).continuous).toEqual({ rescanIntervalMs: 2_000 });
    expect(CampaignRequest.parse({ ...base, targets: { selector: { tag: 'a' } }, continuous: false }).continuous).toBeUndefined();
    const refused = CampaignRequest.safeParse({ ...base, targets: { list: [{ clientId: 'x' }] }, continuous: true });
    expect(refused.success).toBe(false);
    expect(refused.error?.issues[0]).toMatchObject({ path: ['continuous'], message: expect.stringContaining('a list of targets cannot grow') });
  });

  it('matches a record as the filter selects it', () => {
    expect(selectorFilter({ prefix: 'a.b', tag: 't' })).toEqual({ status: 'active', _id: { $regex: '^a\\.b' }, tags: 't' });
    const device = { clientId: 'a.b-1', tags: ['t', 'u'], status: 'active' };
    expect(matchesSelector({ prefix: 'a.b', tag: 't' }, device)).toBe(true);
    expect(matchesSelector({ prefix: 'a.c' }, device)).toBe(false);
    expect(matchesSelector({ tag: 'v' }, device)).toBe(false);
    expect(matchesSelector({ tag: 't' }, { ...device, status: 'deprovisioned' })).toBe(false);
  });
});
