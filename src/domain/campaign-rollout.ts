import type { AbortCriterion, Rollout } from './schemas/campaign';
import { CAMPAIGN_CHUNK_SIZE, type TargetCounts } from './campaign';

/**
 * Rollout pacing and abort criteria, as the campaign workflow applies them (AWS IoT Jobs semantics:
 * https://docs.aws.amazon.com/iot/latest/apireference/API_CreateJob.html). Pure and serialisable: the state
 * is carried across continue-as-new, and time comes in as an argument (workflow time is deterministic).
 */

export interface PacerState {
  /** Current rate limit; null = unlimited. */
  ratePerMinute: number | null;
  /** Earliest time the next batch may start. */
  nextSlotAt: number;
  /** Delivered / notified totals at the last rate increase (exponential ramp). */
  rampMark: number;
}

export function initialPacer(rollout: Rollout): PacerState {
  const ramp = rollout.exponentialRate;
  const rate = ramp ? ramp.baseRatePerMinute : (rollout.maximumPerMinute ?? null);
  return { ratePerMinute: rate, nextSlotAt: 0, rampMark: 0 };
}

/**
 * Bulk requests one publishing activity sends in a row with no rate limit: each activity costs a
 * Temporal round trip and a chunk state write, so fewer, larger activities leave more of the
 * machine to publishing (bench/campaign). Five requests of the default 500 cover a whole chunk.
 */
export const BULK_REQUESTS_PER_BATCH = 5;

/**
 * How many targets the next batch (one activity) may hold: with no rate limit, a few bulk requests'
 * worth (at most a chunk); with one, one request of about one second's worth at the current rate,
 * so a per-minute cap also holds over shorter windows.
 */
export function batchAllowance(rollout: Rollout, pacer: PacerState): number {
  if (pacer.ratePerMinute === null) return Math.min(CAMPAIGN_CHUNK_SIZE, rollout.batchSize * BULK_REQUESTS_PER_BATCH);
  return Math.max(1, Math.min(rollout.batchSize, Math.ceil(pacer.ratePerMinute / 60)));
}

/** Time from which a batch may start; before it, wait. */
export function nextSlot(pacer: PacerState): number {
  return pacer.ratePerMinute === null ? 0 : pacer.nextSlotAt;
}

function msPerTarget(pacer: PacerState): number {
  return pacer.ratePerMinute === null ? 0 : 60_000 / pacer.ratePerMinute;
}

/** Reserves `count` targets' worth of time for a batch starting now. */
export function reserve(pacer: PacerState, count: number, now: number): PacerState {
  if (pacer.ratePerMinute === null) return pacer;
  return { ...pacer, nextSlotAt: Math.max(pacer.nextSlotAt, now) + count * msPerTarget(pacer) };
}

/**
 * Targets per minute over the last `windowMs`, measured the way the limit is applied: `reserve`
 * gives each batch's targets the pacer's time up to its next slot, so the window runs to that slot
 * when it lies ahead. Counting only up to now would read a batch launched a moment ago as a rate
 * over the limit (34/min under a 30/min limit). `recent` holds [time, targets published] per batch.
 */
export function measuredRatePerMinute(
  recent: readonly (readonly [number, number])[],
  now: number,
  startedAt: number,
  pacer: PacerState,
  windowMs: number,
): number {
  const since = Math.max(now - windowMs, startedAt);
  const published = recent.filter(([at]) => at > now - windowMs).reduce((sum, [, n]) => sum + n, 0);
  const until = pacer.ratePerMinute === null ? now : Math.max(now, pacer.nextSlotAt);
  return Math.round((published * 60_000) / Math.max(1_000, until - since));
}

/** Gives back the time of reserved targets a batch did not publish to (fewer were due). */
export function refund(pacer: PacerState, unused: number, now: number): PacerState {
  if (pacer.ratePerMinute === null || unused <= 0) return pacer;
  return { ...pacer, nextSlotAt: Math.max(now, pacer.nextSlotAt - unused * msPerTarget(pacer)) };
}

/** Exponential ramp: multiply the rate by the factor each time the criterion is met again, up to the cap. */
export function ramp(rollout: Rollout, pacer: PacerState, totals: { delivered: number; notified: number }): PacerState {
  const exp = rollout.exponentialRate;
  if (!exp || pacer.ratePerMinute === null) return pacer;
  const step = exp.numberOfSucceededTargets ?? exp.numberOfNotifiedTargets ?? Infinity;
  const reached = exp.numberOfSucceededTargets !== undefined ? totals.delivered : totals.notified;
  let { ratePerMinute, rampMark } = pacer;
  const cap = rollout.maximumPerMinute ?? Infinity;
  while (reached - rampMark >= step && ratePerMinute < cap) {
    ratePerMinute = Math.min(cap, Math.round(ratePerMinute * exp.incrementFactor));
    rampMark += step;
  }
  if (ratePerMinute === pacer.ratePerMinute) return pacer;
  return { ...pacer, ratePerMinute, rampMark };
}

function failuresOf(counts: TargetCounts, type: AbortCriterion['failureType']): number {
  switch (type) {
    case 'failed':
      return counts.failed;
    case 'offline':
      return counts.offline;
    case 'timed_out':
      return counts.timedOut;
    case 'rejected':
      // Only a device reports REJECTED (replyAbortReason in src/domain/campaign-scheduler.ts).
      return 0;
    case 'all':
      return counts.failed + counts.offline + counts.timedOut;
  }
}

/** Targets with a final outcome of their own (cancelled ones were never executed). */
export function executedCount(counts: TargetCounts): number {
  return counts.delivered + counts.offline + counts.failed + counts.timedOut;
}

/** The reason to abort, when a criterion is met: enough executed targets and a failure share at or over the threshold. */
export function abortReason(criteria: readonly AbortCriterion[], counts: TargetCounts): string | null {
  const executed = executedCount(counts);
  for (const c of criteria) {
    if (executed < c.minExecuted) continue;
    const failures = failuresOf(counts, c.failureType);
    const percent = (failures / executed) * 100;
    if (percent >= c.thresholdPercent) {
      return `abort criterion met: ${failures} of ${executed} executed targets ${c.failureType === 'all' ? 'did not succeed' : `ended ${c.failureType}`} (${percent.toFixed(1)}% >= ${c.thresholdPercent}%)`;
    }
  }
  return null;
}
