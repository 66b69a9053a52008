import type { AbortCriterion, CampaignSettings, CampaignState, ContinuousSettings, ReplySettings, Rollout, ScheduleSettings } from './schemas/campaign';
import { parseMaintenanceWindow, windowStateAt, type MaintenanceWindow } from './maintenance-window';
import { emptyJobStatusCounts, type JobStatusCounts } from './job-status';
import { addCounts, CAMPAIGN_CHUNK_SIZE, emptyCounts, type ChunkReport, type TargetChunking, type TargetCounts } from './campaign';
import { abortReason, batchAllowance, initialPacer, measuredRatePerMinute, nextSlot, ramp, refund, reserve, type PacerState } from './campaign-rollout';

/**
 * The campaign workflow's scheduler, pure and deterministic: control messages and batch reports
 * change the state, and `decide(state, now)` says what the workflow does next (launch a batch, look
 * up reconnected devices, wait, drain, continue as new, finish). The workflow
 * (src/workflows/campaign.ts) only wires handlers to these functions and carries the decisions
 * out, as the presence workflow does with src/domain/presence-machine.ts; the shape follows
 * https://github.com/temporalio/samples-typescript/tree/main/message-passing/safe-message-handlers
 * (state and rules in a module of their own, a thin workflow around them). Time comes in as an
 * argument, so the rules are unit-tested without a server (test/unit/campaign-scheduler.test.ts).
 */

/** Per-chunk numbers, carried across continue-as-new. */
export interface ChunkProgress {
  counts: TargetCounts;
  /** Earliest time an open target is due; null when every target is final. */
  nextDueAt: number | null;
  attempted: number;
  attempts: number;
  transientErrors: number;
  /** Positions of reconnected devices to try again in the chunk's next batch. */
  wake: number[];
}

/** What a run hands to the next one (continue-as-new); all of it plain data. */
export interface CampaignCarry {
  chunks: ChunkProgress[];
  pacer: PacerState;
  paused: boolean;
  pausedAt?: number;
  startedAt: number;
  deadlineAt: number | null;
  /** [time, targets published] of the batches finished in the last minute. */
  recent: [number, number][];
  /** Reconnected devices not looked up yet. */
  woken: string[];
  batches: number;
  /** Campaigns with replies: the execution counts last read and when that read began. */
  replies?: { counts: ReplyCounts; polledAt: number };
  /** Continuous campaigns. */
  continuous?: ContinuousCarry;
}

export interface ContinuousCarry {
  closed: boolean;
  /** The next rescan reads device records updated since this time. */
  scanFrom: number;
  /** When the last rescan began (the next is due an interval later). */
  lastScanAt: number;
  /** Devices signalled as joining, not added yet. */
  pending: string[];
}

/** Device-reported execution states of a campaign's targets (campaigns with `expectReply`). */
export interface ReplyCounts {
  queued: number;
  inProgress: number;
  succeeded: number;
  failed: number;
  rejected: number;
  timedOut: number;
  canceled: number;
  /** With retries (expectReply.retry): retries so far, all targets and failure types. */
  retries?: number;
}

export interface CampaignProgress {
  campaignId: string;
  state: Exclude<CampaignState, 'created'>;
  reason?: string;
  counts: TargetCounts;
  /** Attempts beyond each target's first. */
  retries: number;
  transientErrors: number;
  /** Targets published to per minute, measured over the last minute. */
  ratePerMinute: number;
  /** The rollout's current limit (null = none). */
  rateLimitPerMinute: number | null;
  /** Time to finish the targets not waiting for a device, at the measured rate. */
  etaSeconds: number | null;
  batches: number;
  startedAt: string;
  deadlineAt?: string;
  pausedAt?: string;
  /**
   * Set while a running campaign publishes nothing because of its schedule: before its start time
   * (`start-at`) or outside every maintenance window (`window`); `opensAt` is when it goes on.
   */
  waitingForWindow?: { reason: 'start-at' | 'window'; opensAt: string | null };
  /** With maintenance windows, while one is open: when the last open one closes. */
  windowClosesAt?: string;
  finishedAt?: string;
  /** Campaigns with `expectReply`: the targets' device-reported states, as last read. */
  replies?: ReplyCounts;
  /** Continuous campaigns: `open` while matching devices join, `closed` once closed. */
  continuous?: 'open' | 'closed';
  /** Set by the client when it could not ask the workflow itself. */
  note?: string;
  /** An aborted campaign with a rollback: the rollback campaign's id (docs/jobs.md). */
  rollback?: string;
  /** A rollback campaign: the campaign it rolls back. */
  rollbackOf?: string;
}

export type CampaignEndState = 'completed' | 'cancelled' | 'aborted';

/** One run's scheduler: the carried state and what this run alone keeps (batches in flight, counters). */
export interface Scheduler {
  readonly campaignId: string;
  readonly rollout: Rollout;
  readonly abort: CampaignSettings['abort'];
  readonly deadlineMs: number | undefined;
  readonly schedule: { startAt: number | null; windows: MaintenanceWindow[] };
  /** The last gate computed, reused until the time it changes. */
  gateCache: { gate: Gate; validFrom: number; validUntil: number } | null;
  readonly replies: ReplySettings | undefined;
  readonly continuous: ContinuousSettings | undefined;
  carry: CampaignCarry;
  /** Set once the targets are known (a selector campaign resolves them first). */
  prepared: boolean;
  /** A cancel, an abort criterion met or a failed batch: the campaign ends once nothing runs. */
  ending: { state: 'cancelled' | 'aborted'; reason: string } | null;
  finished: boolean;
  inFlight: Set<number>;
  wakeInFlight: boolean;
  /** The start time of the execution-count read in flight, or null. */
  replyPollSince: number | null;
  woken: Set<string>;
  /** Continuous campaigns: devices signalled as joining, and whether a join (or rescan) runs. */
  joined: Set<string>;
  joinInFlight: boolean;
  batchesThisRun: number;
  signalsThisRun: number;
  /** Changes a wait may be waiting for: control messages (pause, resume, cancel), reconnect signals, finished work. */
  seen: { control: number; wakes: number; completions: number };
  /** Summed over every chunk (hundreds for a million targets): kept until a report changes it. */
  totalsCache: TargetCounts | null;
}

/** What the workflow does next. */
export type Decision =
  | { type: 'launchBatch'; chunk: number }
  | { type: 'lookUpWoken' }
  /** Continuous campaigns: add the devices signalled as joining (or, with `rescan`, those a rescan finds) as a new chunk. */
  | { type: 'joinTargets'; rescan: boolean }
  /** Read the device-reported execution counts (timing out overdue targets first). */
  | { type: 'pollReplies' }
  /**
   * Wait until `until` (null: no timer) or until one of the changes named happens; a control
   * message always ends a wait. Timers only when needed, to keep history short.
   */
  | { type: 'wait'; until: number | null; onWake: boolean; onCompletion: 'any' | 'whenIdle' }
  /** Launch nothing more; wait for the work in flight (the campaign is ending or a new run is due). */
  | { type: 'drain' }
  | { type: 'continueAsNew' }
  /**
   * End the open targets of `openChunks` (`expire`: at the deadline; `cancel`: cancelled or
   * aborted, with `reason`), record the final state and return.
   */
  | { type: 'finish'; state: CampaignEndState; reason?: string; ending: 'expire' | 'cancel'; openChunks: number[] };

/** The run limits decide() checks, from the workflow's own info. */
export interface RunLimits {
  continueAsNewSuggested: boolean;
  batchesPerRun: number;
}

/** Continue as new well before the 10,000 signals a run may receive (https://docs.temporal.io/workflow-execution/limits). */
export const SIGNALS_PER_RUN = 5_000;
export const WAKE_LOOKUP_BATCH = 500;
export const RATE_WINDOW_MS = 60_000;
export const DEADLINE_REASON = 'the campaign deadline passed';

export function newScheduler(
  settings: Pick<CampaignSettings, 'campaignId' | 'rollout' | 'abort' | 'deadlineMs' | 'schedule' | 'replies' | 'continuous'>,
  now: number,
  carry?: CampaignCarry,
): Scheduler {
  const continuous: ContinuousCarry | undefined = settings.continuous ? { closed: false, scanFrom: now - RESCAN_OVERLAP_MS, lastScanAt: now, pending: [] } : undefined;
  return {
    campaignId: settings.campaignId,
    rollout: settings.rollout,
    abort: settings.abort,
    deadlineMs: settings.deadlineMs,
    schedule: parseSchedule(settings.schedule),
    gateCache: null,
    replies: settings.replies,
    continuous: settings.continuous,
    carry: carry ?? { chunks: [], pacer: initialPacer(settings.rollout), paused: false, startedAt: now, deadlineAt: null, recent: [], woken: [], batches: 0, ...(continuous ? { continuous } : {}) },
    prepared: carry !== undefined,
    ending: null,
    finished: false,
    inFlight: new Set(),
    wakeInFlight: false,
    replyPollSince: null,
    woken: new Set(carry?.woken ?? []),
    joined: new Set(carry?.continuous?.pending ?? []),
    joinInFlight: false,
    batchesThisRun: 0,
    signalsThisRun: 0,
    seen: { control: 0, wakes: 0, completions: 0 },
    totalsCache: null,
  };
}

/** The targets are stored: one entry per chunk; the deadline runs from now. A pause that came first holds. */
export function targetsPrepared(s: Scheduler, targets: TargetChunking, now: number): void {
  const { total, chunkCount, chunkSize } = targets;
  s.carry = {
    ...s.carry,
    chunks: Array.from({ length: chunkCount }, (_, chunk) => ({
      counts: emptyCounts(Math.min(chunkSize, total - chunk * chunkSize)),
      nextDueAt: 0,
      attempted: 0,
      attempts: 0,
      transientErrors: 0,
      wake: [],
    })),
    startedAt: now,
    // A campaign scheduled for later gets its whole deadline from its start time.
    deadlineAt: s.deadlineMs === undefined ? null : Math.max(now, s.schedule.startAt ?? now) + s.deadlineMs,
  };
  s.prepared = true;
  s.totalsCache = null;
}

// ---- control messages ----

export function isEnding(s: Scheduler): boolean {
  return s.finished || s.ending !== null;
}

/** Why a pause is refused now, or null. */
export function pauseRefusal(s: Scheduler): string | null {
  if (isEnding(s)) return 'the campaign is ending; it cannot be paused';
  if (s.carry.paused) return 'the campaign is already paused';
  return null;
}

export function resumeRefusal(s: Scheduler): string | null {
  if (isEnding(s)) return 'the campaign is ending; it cannot be resumed';
  if (!s.carry.paused) return 'the campaign is not paused';
  return null;
}

export const MAX_CANCEL_REASON = 2028;

export function cancelRefusal(s: Scheduler, reason: unknown): string | null {
  const text = typeof reason === 'string' ? reason.trim() : '';
  if (!text) return 'a cancel needs a reason';
  if (text.length > MAX_CANCEL_REASON) return `the reason must be at most ${MAX_CANCEL_REASON} characters`;
  if (isEnding(s)) return 'the campaign is already ending';
  return null;
}

export function pause(s: Scheduler, now: number): void {
  s.carry.paused = true;
  s.carry.pausedAt = now;
  s.seen.control += 1;
}

export function resume(s: Scheduler): void {
  s.carry.paused = false;
  delete s.carry.pausedAt;
  s.seen.control += 1;
}

export function cancel(s: Scheduler, reason: string): void {
  s.ending ??= { state: 'cancelled', reason: reason.trim() };
  s.seen.control += 1;
}

/** A `deviceOnline` signal: the device is looked up in the campaign's waiting records at the next step. */
export function deviceOnline(s: Scheduler, clientId: unknown): void {
  s.signalsThisRun += 1;
  if (isEnding(s) || typeof clientId !== 'string') return;
  s.woken.add(clientId);
  s.seen.wakes += 1;
}

/** Whether pause may answer: nothing is being published any more. */
export function isIdle(s: Scheduler): boolean {
  return s.inFlight.size === 0 && !s.wakeInFlight && !s.joinInFlight;
}

// ---- batches and lookups ----

export interface BatchOrder {
  chunk: number;
  /** Targets the batch may publish to (the rollout allowance). */
  limit: number;
  wake: number[];
  /** This run's batch number (with the run id, the batch's idempotency key). */
  sequence: number;
}

/** Starts a batch on a chunk: reserves its slot at the rollout rate and hands over the chunk's reconnected positions. */
export function beginBatch(s: Scheduler, chunk: number, now: number): BatchOrder {
  const progress = s.carry.chunks[chunk] as ChunkProgress;
  const limit = batchAllowance(s.rollout, s.carry.pacer);
  s.carry.pacer = reserve(s.carry.pacer, limit, now);
  const wake = progress.wake;
  progress.wake = [];
  s.inFlight.add(chunk);
  s.carry.batches += 1;
  s.batchesThisRun += 1;
  return { chunk, limit, wake, sequence: s.batchesThisRun };
}

function applyReport(s: Scheduler, report: ChunkReport): void {
  const chunk = s.carry.chunks[report.chunk];
  if (!chunk) return;
  chunk.counts = report.counts;
  chunk.nextDueAt = report.nextDueAt;
  chunk.attempted = report.attempted;
  chunk.attempts = report.attempts;
  chunk.transientErrors = report.transientErrors;
  s.totalsCache = null;
}

/** A batch finished: its chunk's state, the rate measured, the ramp, the abort criteria. */
export function batchDone(s: Scheduler, order: BatchOrder, report: ChunkReport, now: number): void {
  applyReport(s, report);
  const c = s.carry;
  c.pacer = refund(c.pacer, order.limit - report.published, now);
  if (report.published > 0) c.recent.push([now, report.published]);
  c.recent = c.recent.filter(([t]) => t > now - RATE_WINDOW_MS);
  if (s.rollout.exponentialRate) c.pacer = ramp(s.rollout, c.pacer, rampProgress(s));
  if (!s.ending && s.abort.length > 0) {
    const reason = abortReason(s.abort, totals(s));
    if (reason) s.ending = { state: 'aborted', reason };
  }
  settle(s, order.chunk);
}

/** A batch failed for good (its activity's retries gave up): the campaign aborts; its reconnected positions are kept. */
export function batchFailed(s: Scheduler, order: BatchOrder, message: string): void {
  s.carry.chunks[order.chunk]?.wake.push(...order.wake);
  s.ending ??= { state: 'aborted', reason: `publishing failed: ${message}` };
  settle(s, order.chunk);
}

function settle(s: Scheduler, chunk: number): void {
  s.inFlight.delete(chunk);
  s.seen.completions += 1;
}

/** Takes up to WAKE_LOOKUP_BATCH reconnected devices to look up. */
export function beginWakeLookup(s: Scheduler): string[] {
  const clientIds = [...s.woken].slice(0, WAKE_LOOKUP_BATCH);
  for (const id of clientIds) s.woken.delete(id);
  s.wakeInFlight = true;
  return clientIds;
}

/** Where the reconnected devices' targets are (none when the lookup failed: their rechecks still come). */
export function wakeLookupDone(s: Scheduler, entries: readonly { chunk: number; index: number }[]): void {
  for (const entry of entries) s.carry.chunks[entry.chunk]?.wake.push(entry.index);
  s.wakeInFlight = false;
  s.seen.completions += 1;
}

/** The final reports of chunks ended at the finish. */
export function chunksFinished(s: Scheduler, reports: readonly ChunkReport[]): void {
  for (const report of reports) applyReport(s, report);
}

// ---- scheduling ----

/** Whether the schedule lets batches start at a time, and until when that holds. */
export type Gate = { open: true; closesAt: number | null } | { open: false; reason: 'start-at' | 'window'; opensAt: number | null };

function parseSchedule(schedule: ScheduleSettings | undefined): Scheduler['schedule'] {
  return { startAt: schedule?.startAt ?? null, windows: (schedule?.windows ?? []).map(parseMaintenanceWindow) };
}

/** The schedule's gate at `now` (cached until it changes: window arithmetic walks calendar days). */
export function gate(s: Scheduler, now: number): Gate {
  const cached = s.gateCache;
  if (cached && now >= cached.validFrom && now < cached.validUntil) return cached.gate;
  const computed = computeGate(s.schedule, now);
  s.gateCache = { ...computed, validFrom: now };
  return computed.gate;
}

function computeGate(schedule: Scheduler['schedule'], now: number): { gate: Gate; validUntil: number } {
  if (schedule.startAt !== null && now < schedule.startAt) {
    // The windows are looked at from the start time on.
    const first = schedule.windows.length ? windowStateAt(schedule.windows, schedule.startAt) : null;
    const opensAt = first && !first.open ? first.opensAt : schedule.startAt;
    return { gate: { open: false, reason: 'start-at', opensAt }, validUntil: schedule.startAt };
  }
  if (schedule.windows.length === 0) return { gate: { open: true, closesAt: null }, validUntil: Infinity };
  const state = windowStateAt(schedule.windows, now);
  if (state.open) return { gate: { open: true, closesAt: state.closesAt }, validUntil: state.closesAt };
  // Validation refuses windows that never open (opensAt null); such a campaign would wait for its deadline.
  return { gate: { open: false, reason: 'window', opensAt: state.opensAt }, validUntil: state.opensAt ?? Infinity };
}

// ---- deciding ----

function isReady(s: Scheduler, chunk: ChunkProgress, index: number, now: number): boolean {
  return !s.inFlight.has(index) && (chunk.wake.length > 0 || (chunk.nextDueAt !== null && chunk.nextDueAt <= now));
}

function earliestDue(s: Scheduler): number | null {
  let earliest: number | null = null;
  s.carry.chunks.forEach((chunk, index) => {
    if (s.inFlight.has(index)) return;
    const at = chunk.wake.length > 0 ? 0 : chunk.nextDueAt;
    if (at !== null && (earliest === null || at < earliest)) earliest = at;
  });
  return earliest;
}

function allFinal(s: Scheduler): boolean {
  return s.carry.chunks.every((chunk) => chunk.nextDueAt === null && chunk.wake.length === 0);
}

export function runDue(s: Scheduler, limits: RunLimits): boolean {
  return limits.continueAsNewSuggested || s.batchesThisRun >= limits.batchesPerRun || s.signalsThisRun >= SIGNALS_PER_RUN;
}

function finish(s: Scheduler): Decision {
  const openChunks = s.carry.chunks.flatMap((chunk, index) => (chunk.counts.pending > 0 ? [index] : []));
  if (s.ending) return { type: 'finish', state: s.ending.state, reason: s.ending.reason, ending: 'cancel', openChunks };
  return { type: 'finish', state: 'completed', ending: 'expire', openChunks };
}

/** What to do next, from the state and the time. */
export function decide(s: Scheduler, now: number, limits: RunLimits): Decision {
  const c = s.carry;
  if (s.ending || (c.deadlineAt !== null && now >= c.deadlineAt)) return isIdle(s) ? finish(s) : { type: 'drain' };
  const published = allFinal(s) && isIdle(s) && s.woken.size === 0;
  if (published && repliesSettled(s) && !continuousOpen(s)) return finish(s);
  const pollAt = nextReplyPoll(s);
  if (pollAt !== null && pollAt <= now) return { type: 'pollReplies' };
  const join = joinDecision(s, now, limits);
  if (join) return join;
  const scanAt = nextRescan(s);
  if (published) {
    // An open continuous campaign may wait for months: it continues as new when its run is due.
    if (continuousOpen(s) && runDue(s, limits)) return { type: 'continueAsNew' };
    // Everything is published: only the device-reported states (and joining devices) are awaited.
    return { type: 'wait', until: minTime(minTime(pollAt, c.deadlineAt), scanAt), onWake: true, onCompletion: 'any' };
  }
  // With every slot busy the run would never be idle: launch nothing more until it is.
  if (runDue(s, limits)) return isIdle(s) ? { type: 'continueAsNew' } : { type: 'drain' };
  if (c.paused) {
    // Reconnect signals are only collected while paused: they neither wake the loop nor restart
    // the deadline timer; a batch that finishes after the pause (it may have failed) does.
    return { type: 'wait', until: minTime(c.deadlineAt, pollAt), onWake: false, onCompletion: 'any' };
  }
  if (s.woken.size > 0 && !s.wakeInFlight) return { type: 'lookUpWoken' };
  const g = gate(s, now);
  if (!g.open) {
    // Batches in flight finish; no new one starts before the opening (or the deadline, if sooner).
    const until = g.opensAt === null || c.deadlineAt === null ? (g.opensAt ?? c.deadlineAt) : Math.min(g.opensAt, c.deadlineAt);
    return { type: 'wait', until: minTime(until, scanAt), onWake: true, onCompletion: 'any' };
  }
  const slot = nextSlot(c.pacer);
  const slotFree = s.inFlight.size < s.rollout.concurrency;
  if (slotFree && slot <= now) {
    const ready = c.chunks.findIndex((chunk, index) => isReady(s, chunk, index, now));
    if (ready >= 0) return { type: 'launchBatch', chunk: ready };
  }
  // Wait for the next batch's time when a slot is free, a finished batch when none is, the
  // deadline when nothing runs. Rate-limited with a timer set for the next slot, a finished batch
  // cannot start anything sooner, unless it leaves the campaign idle (it may be done).
  const due = slotFree ? earliestDue(s) : null;
  let until = due === null ? null : Math.max(due, slot);
  if (isIdle(s) && c.deadlineAt !== null) until = minTime(until, c.deadlineAt);
  until = minTime(minTime(until, pollAt), scanAt);
  return { type: 'wait', until, onWake: true, onCompletion: until === null || slot <= now ? 'any' : 'whenIdle' };
}

// ---- device-reported execution (campaigns with `expectReply`) ----

function minTime(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  return b === null ? a : Math.min(a, b);
}

/** When the next execution-count read is due: null without replies, while one runs, or before anything was delivered. */
function nextReplyPoll(s: Scheduler): number | null {
  if (!s.replies || s.replyPollSince !== null || !s.prepared) return null;
  // An open continuous campaign whose answers are all in reads again only once it delivered more.
  if (s.carry.continuous && repliesSettled(s)) return null;
  if (totals(s).delivered === 0 && !s.carry.replies) return null;
  // The first read once something was delivered, then one per interval.
  return s.carry.replies ? s.carry.replies.polledAt + s.replies.pollMs : 0;
}

/**
 * Every delivered target reached a final state, by a read that saw all of them (its records are
 * written before its batch reports, so a read with fewer records began before that batch ended).
 */
function repliesSettled(s: Scheduler): boolean {
  if (!s.replies) return true;
  const delivered = totals(s).delivered;
  if (delivered === 0) return true;
  const counts = s.carry.replies?.counts;
  if (!counts) return false;
  const recorded = counts.queued + counts.inProgress + counts.succeeded + counts.failed + counts.rejected + counts.timedOut + counts.canceled;
  return recorded >= delivered && counts.queued + counts.inProgress === 0;
}

export function replyCountsOf(counts: JobStatusCounts & { retries?: number }): ReplyCounts {
  return {
    ...(counts.retries !== undefined ? { retries: counts.retries } : {}),
    queued: counts.QUEUED,
    inProgress: counts.IN_PROGRESS,
    succeeded: counts.SUCCEEDED,
    failed: counts.FAILED,
    rejected: counts.REJECTED,
    timedOut: counts.TIMED_OUT,
    canceled: counts.CANCELED,
  };
}

export function beginReplyPoll(s: Scheduler, now: number): void {
  s.replyPollSince = now;
}

/** The counts read: kept, and the abort criteria checked against them. A failed read (null) is tried again at the next interval. */
export function replyPollDone(s: Scheduler, counts: ReplyCounts | null): void {
  const polledAt = s.replyPollSince ?? 0;
  s.replyPollSince = null;
  s.carry.replies = counts ? { counts, polledAt } : { counts: s.carry.replies?.counts ?? replyCountsOf(emptyJobStatusCounts()), polledAt };
  if (counts && s.rollout.exponentialRate) s.carry.pacer = ramp(s.rollout, s.carry.pacer, rampProgress(s));
  if (counts && !s.ending && s.abort.length > 0) {
    const reason = replyAbortReason(s.abort, counts);
    if (reason) s.ending = { state: 'aborted', reason };
  }
  s.seen.completions += 1;
}

function replyFailures(counts: ReplyCounts, type: AbortCriterion['failureType']): number {
  switch (type) {
    case 'failed':
      return counts.failed;
    case 'rejected':
      return counts.rejected;
    case 'timed_out':
      return counts.timedOut;
    case 'all':
      return counts.failed + counts.rejected + counts.timedOut;
    case 'offline':
      // Offline is a publishing outcome (abortReason in src/domain/campaign-rollout.ts).
      return 0;
  }
}

/** AWS IoT Jobs' abort criteria on the device-reported states: a share of the targets that reached a final state. */
export function replyAbortReason(criteria: readonly AbortCriterion[], counts: ReplyCounts): string | null {
  const executed = counts.succeeded + counts.failed + counts.rejected + counts.timedOut;
  for (const c of criteria) {
    if (c.failureType === 'offline' || executed < c.minExecuted) continue;
    const failures = replyFailures(counts, c.failureType);
    const percent = (failures / executed) * 100;
    if (percent >= c.thresholdPercent) {
      const what = c.failureType === 'all' ? 'did not succeed' : `reported ${c.failureType.toUpperCase()}`;
      return `abort criterion met: ${failures} of ${executed} targets that answered or timed out ${what} (${percent.toFixed(1)}% >= ${c.thresholdPercent}%)`;
    }
  }
  return null;
}

/**
 * What the exponential ramp counts: `numberOfSucceededTargets` counts the targets EMQX delivered
 * to, or, when the targets report the job, the executions they reported SUCCEEDED (as last read),
 * as AWS IoT Jobs' `numberOfSucceededThings` does
 * (https://docs.aws.amazon.com/iot/latest/apireference/API_RateIncreaseCriteria.html).
 */
function rampProgress(s: Scheduler): { delivered: number; notified: number } {
  const succeeded = s.replies ? (s.carry.replies?.counts.succeeded ?? 0) : totals(s).delivered;
  return { delivered: succeeded, notified: effort(s).attempted };
}

/** Marks what a wait (or a drain) has seen; `changedSince` tells whether something it waits for happened since. */
export function mark(s: Scheduler): Scheduler['seen'] {
  return { ...s.seen };
}

export function changedSince(s: Scheduler, seen: Scheduler['seen'], decision: Decision, limits: RunLimits): boolean {
  if (s.seen.control !== seen.control) return true;
  const completed = s.seen.completions !== seen.completions;
  if (decision.type !== 'wait') return completed;
  // A run due to continue as new (signals grow its history too) stops waiting.
  if (runDue(s, limits)) return true;
  if (decision.onWake && s.seen.wakes !== seen.wakes) return true;
  return completed && (decision.onCompletion === 'any' || isIdle(s));
}

/** The carry for the next run. */
export function carryForNextRun(s: Scheduler): CampaignCarry {
  const { continuous } = s.carry;
  return { ...s.carry, woken: [...s.woken], ...(continuous ? { continuous: { ...continuous, pending: [...s.joined] } } : {}) };
}

// ---- progress ----

export function totals(s: Scheduler): TargetCounts {
  return (s.totalsCache ??= s.carry.chunks.reduce((sum, c) => addCounts(sum, c.counts), emptyCounts()));
}

function effort(s: Scheduler): { attempted: number; attempts: number; transientErrors: number } {
  return s.carry.chunks.reduce(
    (sum, c) => ({ attempted: sum.attempted + c.attempted, attempts: sum.attempts + c.attempts, transientErrors: sum.transientErrors + c.transientErrors }),
    { attempted: 0, attempts: 0, transientErrors: 0 },
  );
}

function gateProgress(g: Gate): Pick<CampaignProgress, 'waitingForWindow' | 'windowClosesAt'> {
  if (!g.open) return { waitingForWindow: { reason: g.reason, opensAt: g.opensAt === null ? null : new Date(g.opensAt).toISOString() } };
  return g.closesAt === null ? {} : { windowClosesAt: new Date(g.closesAt).toISOString() };
}

/**
 * The `waitingForWindow` memo entry (what the Temporal UI shows): when a running campaign that
 * waits for its schedule goes on (`never` if no window opens), or null when it does not wait.
 */
export function windowMemo(s: Scheduler, now: number): string | null {
  if (isEnding(s) || s.carry.paused) return null;
  const g = gate(s, now);
  if (g.open) return null;
  return g.opensAt === null ? 'never' : new Date(g.opensAt).toISOString();
}

/** The campaign's progress as the `campaignProgress` query answers it. */
export function progress(s: Scheduler, now: number): CampaignProgress {
  const c = s.carry;
  const counts = totals(s);
  const work = effort(s);
  const ratePerMinute = s.prepared ? measuredRatePerMinute(c.recent, now, c.startedAt, c.pacer, RATE_WINDOW_MS) : 0;
  const remaining = counts.pending - counts.waiting;
  const out: CampaignProgress = {
    campaignId: s.campaignId,
    state: s.ending?.state ?? (c.paused ? 'paused' : 'running'),
    counts,
    retries: work.attempts - work.attempted,
    transientErrors: work.transientErrors,
    ratePerMinute,
    rateLimitPerMinute: c.pacer.ratePerMinute,
    etaSeconds: remaining === 0 ? 0 : ratePerMinute > 0 ? Math.round((remaining / ratePerMinute) * 60) : null,
    batches: c.batches,
    startedAt: new Date(c.startedAt).toISOString(),
  };
  if (s.ending) out.reason = s.ending.reason;
  if (c.deadlineAt) out.deadlineAt = new Date(c.deadlineAt).toISOString();
  if (c.paused && c.pausedAt) out.pausedAt = new Date(c.pausedAt).toISOString();
  if (!s.ending && !c.paused) Object.assign(out, gateProgress(gate(s, now)));
  if (s.replies) out.replies = c.replies?.counts ?? replyCountsOf(emptyJobStatusCounts());
  if (c.continuous) out.continuous = c.continuous.closed || s.finished ? 'closed' : 'open';
  return out;
}

// ---- continuous campaigns ----

/** Device records updated this long before a rescan's start are read again by the next: a record's `updatedAt` is set a little before it is written. */
export const RESCAN_OVERLAP_MS = 600_000;
/** Devices added to a continuous campaign per join: at most what fills a chunk. */
export const JOIN_BATCH = CAMPAIGN_CHUNK_SIZE;
/** Joining devices kept in the workflow at most; beyond that the next rescan finds them. */
export const MAX_PENDING_JOINS = 10_000;

export function continuousOpen(s: Scheduler): boolean {
  return s.carry.continuous !== undefined && !s.carry.continuous.closed;
}

/** A `devicesJoined` signal: devices provisioned or tagged to match; added at the next step while the campaign is open. */
export function devicesJoined(s: Scheduler, clientIds: unknown): void {
  s.signalsThisRun += 1;
  const c = s.carry.continuous;
  if (!c || c.closed || isEnding(s) || !Array.isArray(clientIds)) return;
  for (const id of clientIds) {
    if (typeof id !== 'string') continue;
    if (s.joined.size >= MAX_PENDING_JOINS) {
      c.lastScanAt = 0;
      break;
    }
    s.joined.add(id);
  }
  s.seen.wakes += 1;
}

export function closeRefusal(s: Scheduler): string | null {
  if (!s.carry.continuous) return 'the campaign is not continuous; only a continuous campaign can be closed';
  if (isEnding(s)) return 'the campaign is ending';
  if (s.carry.continuous.closed) return 'the campaign is already closed';
  return null;
}

/** No device joins any more; the campaign completes once its targets are final. */
export function close(s: Scheduler): void {
  if (s.carry.continuous) s.carry.continuous.closed = true;
  s.joined.clear();
  s.seen.control += 1;
}

/** When the next rescan is due; null when none is (not continuous, closed, or a join runs). */
function nextRescan(s: Scheduler): number | null {
  const c = s.carry.continuous;
  if (!c || c.closed || !s.prepared || s.joinInFlight || !s.continuous) return null;
  return c.lastScanAt + s.continuous.rescanMs;
}

/** A join or rescan to run now; none while a run is due (a stream of joins must not keep it from continuing as new). */
function joinDecision(s: Scheduler, now: number, limits: RunLimits): Decision | null {
  if (!continuousOpen(s) || s.joinInFlight || !s.prepared || s.carry.paused || runDue(s, limits)) return null;
  if (s.joined.size > 0) return { type: 'joinTargets', rescan: false };
  const scanAt = nextRescan(s);
  return scanAt !== null && scanAt <= now ? { type: 'joinTargets', rescan: true } : null;
}

export interface JoinOrder {
  /**
   * The chunk the joining devices go to: the last one while it has room (and no batch on it), so
   * a campaign that stays open for months keeps a few full chunks, not one per join; else a new one.
   */
  chunk: number;
  /** Targets in that chunk before this join (0: a new chunk). */
  size: number;
  /** Targets before this join. */
  total: number;
  /** The devices signalled (a join), or absent (a rescan of the records updated since `since`). */
  clientIds?: string[];
  since?: number;
  startedAt: number;
}

export function beginJoin(s: Scheduler, rescan: boolean, now: number): JoinOrder {
  s.joinInFlight = true;
  const lastIndex = s.carry.chunks.length - 1;
  const last = s.carry.chunks[lastIndex];
  const append = last !== undefined && last.counts.total < JOIN_BATCH && !s.inFlight.has(lastIndex);
  const chunk = append ? lastIndex : s.carry.chunks.length;
  // No batch starts on the chunk while devices are added to it (the join counts as its batch).
  s.inFlight.add(chunk);
  const order: JoinOrder = { chunk, size: append ? last.counts.total : 0, total: totals(s).total, startedAt: now };
  if (rescan) return { ...order, since: s.carry.continuous?.scanFrom ?? now };
  const clientIds = [...s.joined].slice(0, JOIN_BATCH);
  for (const id of clientIds) s.joined.delete(id);
  return { ...order, clientIds };
}

/**
 * A join (or rescan) finished with its chunk's size now (0: no chunk); null when it failed (its
 * devices are tried again).
 */
export function joinDone(s: Scheduler, order: JoinOrder, result: { size: number; more: boolean } | null): void {
  s.joinInFlight = false;
  s.inFlight.delete(order.chunk);
  s.seen.completions += 1;
  const c = s.carry.continuous;
  if (!result) {
    for (const id of order.clientIds ?? []) s.joined.add(id);
    if (c && order.since !== undefined) c.lastScanAt = order.startedAt;
    return;
  }
  const added = result.size - order.size;
  const chunk = s.carry.chunks[order.chunk];
  if (added > 0 && chunk) {
    chunk.counts = { ...chunk.counts, total: chunk.counts.total + added, pending: chunk.counts.pending + added };
    chunk.nextDueAt = 0;
  } else if (added > 0) {
    s.carry.chunks.push({ counts: emptyCounts(result.size), nextDueAt: 0, attempted: 0, attempts: 0, transientErrors: 0, wake: [] });
  }
  s.totalsCache = null;
  if (c && order.since !== undefined && !result.more) {
    c.lastScanAt = order.startedAt;
    c.scanFrom = order.startedAt - RESCAN_OVERLAP_MS;
  }
}
