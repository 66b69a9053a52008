import { describe, expect, it } from 'vitest';
import { CampaignRequest, type CampaignRequestInput, type CampaignSettings } from '../../src/domain/schemas/campaign';
import { emptyCounts, type ChunkReport, type TargetCounts } from '../../src/domain/campaign';
import {
  batchDone,
  beginBatch,
  beginReplyPoll,
  carryForNextRun,
  decide,
  newScheduler,
  progress,
  replyAbortReason,
  replyPollDone,
  targetsPrepared,
  type BatchOrder,
  type ReplyCounts,
  type RunLimits,
  type Scheduler,
} from '../../src/domain/campaign-scheduler';

/**
 * The scheduler's rules for campaigns whose targets report the job (docs/jobs.md): the workflow
 * reads execution counts on a timer and finishes when every delivered target reached a final state.
 */

const LIMITS: RunLimits = { continueAsNewSuggested: false, batchesPerRun: 1_000 };
const POLL_MS = 5_000;

function scheduler(total: number, abort: CampaignSettings['abort'] = [], rollout: CampaignRequestInput['rollout'] = {}): Scheduler {
  const request = CampaignRequest.parse({ targets: { list: [{ clientId: 'x' }] }, message: { topic: 't', payload: { format: 'text', text: 'p' } }, rollout });
  const settings: CampaignSettings = {
    campaignId: 'job-1',
    transport: 'rest',
    rollout: request.rollout,
    policy: { retry: request.retry, offline: request.offline },
    abort,
    replies: { timeoutMs: 60_000, pollMs: POLL_MS },
  };
  const s = newScheduler(settings, 0);
  targetsPrepared(s, { total, chunkCount: 1, chunkSize: total }, 0);
  return s;
}

function publishAll(s: Scheduler, now: number, outcome: Partial<TargetCounts>): void {
  const next = decide(s, now, LIMITS);
  expect(next).toEqual({ type: 'launchBatch', chunk: 0 });
  const order: BatchOrder = beginBatch(s, 0, now);
  const size = s.carry.chunks[0]?.counts.total ?? 0;
  const counts = { ...emptyCounts(size), ...outcome, pending: 0 };
  const report: ChunkReport = { chunk: 0, counts, nextDueAt: null, published: size, delivered: counts.delivered, attempted: size, attempts: size, transientErrors: 0 };
  batchDone(s, order, report, now);
}

const replies = (counts: Partial<ReplyCounts>): ReplyCounts => ({ queued: 0, inProgress: 0, succeeded: 0, failed: 0, rejected: 0, timedOut: 0, canceled: 0, ...counts });

function poll(s: Scheduler, at: number, counts: ReplyCounts): void {
  expect(decide(s, at, LIMITS)).toEqual({ type: 'pollReplies' });
  beginReplyPoll(s, at);
  replyPollDone(s, counts);
}

describe('campaign scheduler: device-reported execution', () => {
  it('does not finish when every target is published, but when every delivered target reached a final state', () => {
    const s = scheduler(4);
    publishAll(s, 1_000, { delivered: 4 });
    // Published: the first read is due at once, then one every poll interval.
    poll(s, 1_000, replies({ queued: 3, succeeded: 1 }));
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'wait', until: 1_000 + POLL_MS, onWake: true, onCompletion: 'any' });
    expect(progress(s, 1_000).replies).toEqual(replies({ queued: 3, succeeded: 1 }));
    poll(s, 6_000, replies({ inProgress: 1, succeeded: 2, failed: 1 }));
    expect(decide(s, 6_000, LIMITS).type).toBe('wait');
    poll(s, 11_000, replies({ succeeded: 2, failed: 1, timedOut: 1 }));
    expect(decide(s, 11_000, LIMITS)).toEqual({ type: 'finish', state: 'completed', ending: 'expire', openChunks: [] });
  });

  it('a read that saw fewer executions than targets delivered (it began before their batch ended) does not finish', () => {
    const s = scheduler(3);
    publishAll(s, 0, { delivered: 3 });
    beginReplyPoll(s, 0);
    replyPollDone(s, replies({ succeeded: 2 }));
    expect(decide(s, 0, LIMITS).type).toBe('wait');
    poll(s, POLL_MS, replies({ succeeded: 3 }));
    expect(decide(s, POLL_MS, LIMITS).type).toBe('finish');
  });

  it('waits for a read in flight without starting another, and retries a failed read at the next interval', () => {
    const s = scheduler(2);
    publishAll(s, 0, { delivered: 2 });
    beginReplyPoll(s, 0);
    expect(decide(s, 10_000, LIMITS)).toEqual({ type: 'wait', until: null, onWake: true, onCompletion: 'any' });
    replyPollDone(s, null);
    expect(decide(s, 1_000, LIMITS)).toEqual({ type: 'wait', until: POLL_MS, onWake: true, onCompletion: 'any' });
    expect(decide(s, POLL_MS, LIMITS)).toEqual({ type: 'pollReplies' });
  });

  it('finishes at once when nothing was delivered: no execution to wait for', () => {
    const s = scheduler(2);
    publishAll(s, 0, { failed: 2 });
    expect(decide(s, 0, LIMITS)).toMatchObject({ type: 'finish', state: 'completed' });
  });

  it('aborts on the share of device-reported failures, and carries the counts to the next run', () => {
    const s = scheduler(10, [{ failureType: 'all', minExecuted: 4, thresholdPercent: 50 }]);
    publishAll(s, 0, { delivered: 10 });
    poll(s, 0, replies({ queued: 7, succeeded: 1, failed: 1, rejected: 1 }));
    expect(s.ending).toBeNull();
    expect(carryForNextRun(s).replies).toEqual({ counts: replies({ queued: 7, succeeded: 1, failed: 1, rejected: 1 }), polledAt: 0 });
    poll(s, POLL_MS, replies({ queued: 5, succeeded: 2, failed: 1, rejected: 1, timedOut: 1 }));
    expect(decide(s, POLL_MS, LIMITS)).toEqual({
      type: 'finish',
      state: 'aborted',
      reason: 'abort criterion met: 3 of 5 targets that answered or timed out did not succeed (60.0% >= 50%)',
      ending: 'cancel',
      openChunks: [],
    });
  });

  it('each failure type counts its own device-reported state; offline counts only publishing outcomes', () => {
    const counts = replies({ succeeded: 6, failed: 1, rejected: 2, timedOut: 1 });
    expect(replyAbortReason([{ failureType: 'rejected', minExecuted: 10, thresholdPercent: 20 }], counts)).toContain('2 of 10 targets that answered or timed out reported REJECTED');
    expect(replyAbortReason([{ failureType: 'failed', minExecuted: 10, thresholdPercent: 20 }], counts)).toBeNull();
    expect(replyAbortReason([{ failureType: 'timed_out', minExecuted: 10, thresholdPercent: 10 }], counts)).toContain('reported TIMED_OUT');
    expect(replyAbortReason([{ failureType: 'offline', minExecuted: 1, thresholdPercent: 1 }], counts)).toBeNull();
    expect(replyAbortReason([{ failureType: 'all', minExecuted: 11, thresholdPercent: 1 }], counts)).toBeNull();
  });

  it('the exponential ramp steps on the executions the devices reported SUCCEEDED, not on the targets EMQX delivered to', () => {
    const s = scheduler(100, [], { batchSize: 100, exponentialRate: { baseRatePerMinute: 60, incrementFactor: 2, numberOfSucceededTargets: 2 } });
    const order = beginBatch(s, 0, 0);
    expect(order.limit).toBe(1);
    const counts = { ...emptyCounts(100), delivered: 10, pending: 90 };
    batchDone(s, order, { chunk: 0, counts, nextDueAt: 0, published: 10, delivered: 10, attempted: 10, attempts: 10, transientErrors: 0 }, 1_000);
    // Ten delivered, none succeeded yet: the rate stays.
    expect(s.carry.pacer.ratePerMinute).toBe(60);
    beginReplyPoll(s, 1_000);
    replyPollDone(s, replies({ queued: 7, inProgress: 1, succeeded: 1, failed: 1 }));
    expect(s.carry.pacer.ratePerMinute).toBe(60);
    beginReplyPoll(s, 6_000);
    replyPollDone(s, replies({ queued: 4, succeeded: 5, failed: 1 }));
    // Five succeeded: two steps of 2 -> 60 * 2 * 2.
    expect(progress(s, 6_000).rateLimitPerMinute).toBe(240);
  });
});
