import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { CampaignSettings, CampaignState } from '../domain/schemas/campaign';
import { addCounts, emptyCounts, type ChunkReport, type TargetChunking, type TargetCounts } from '../domain/campaign-core';
import { abortReason, batchAllowance, initialPacer, measuredRatePerMinute, nextSlot, ramp, refund, reserve, type PacerState } from '../domain/campaign-rollout';
import { failureMessage } from '../domain/failures';
import {
  cancelCampaignUpdate,
  campaignProgressQuery,
  deviceOnlineSignal,
  pauseCampaignUpdate,
  resumeCampaignUpdate,
  type CampaignProgress,
  type CampaignSummary,
} from '../contracts/campaign';

/**
 * A publish campaign (workflow id `campaign/<campaignId>`): the targets and the message live in
 * MongoDB, in chunks (up to CAMPAIGN_CHUNK_SIZE targets); the workflow keeps a few numbers per
 * chunk and hands batches to the publishing activity at the rollout rate, up to
 * `rollout.concurrency` at a time on different chunks. Each activity result is the chunk's absolute
 * state, so history grows by a handful of events per batch (about 2.5 per 1,000 targets at the
 * default batch size), not per target, and the run continues as new long before Temporal's limits
 * (https://docs.temporal.io/workflow-execution/limits).
 *
 * Control: pause / resume / cancel are updates (validated, answered once they took effect: pause
 * returns when no batch is in flight any more); `campaignProgress` is a query; `deviceOnline` is a
 * signal from the device's connect path that moves its waiting target to the front.
 */


/** Per-chunk numbers, carried across continue-as-new. */
interface ChunkProgress {
  counts: TargetCounts;
  nextDueAt: number | null;
  attempted: number;
  attempts: number;
  transientErrors: number;
  /** Positions of reconnected devices to try again in the chunk's next batch. */
  wake: number[];
}

export interface CampaignCarry {
  chunks: ChunkProgress[];
  pacer: PacerState;
  paused: boolean;
  pausedAt?: number;
  startedAt: number;
  deadlineAt: number | null;
  /** [time, targets published] of the batches finished in the last minute. */
  recent: [number, number][];
  woken: string[];
  batches: number;
}

export interface CampaignInput {
  settings: CampaignSettings;
  /**
   * List campaigns: how the starter stored the targets, so publishing starts in the first workflow
   * task. Without it (selector campaigns) the prepareCampaignTargets activity resolves them first.
   */
  targets?: TargetChunking;
  carry?: CampaignCarry;
  /** Continue as new after this many batches in one run (default 1,000; tests lower it). */
  batchesPerRun?: number;
}

const MAX_CANCEL_REASON = 2028;
/** Continue as new well before the 10,000 signals a run may receive. */
const SIGNALS_PER_RUN = 5_000;
const WAKE_LOOKUP_BATCH = 500;
const FINISH_CHUNKS_PER_ACTIVITY = 20;
const RATE_WINDOW_MS = 60_000;

const publishing = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '20 seconds',
  // Outages of MongoDB (or a crashed worker) are retried without end; EMQX errors that retrying
  // cannot fix (401, bad responses) are non-retryable and abort the campaign.
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** A few quick tries in the workflow task; if MongoDB is out longer, `bookkeeping` retries on the server (no history growth). */
const finishing = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3 },
});

function freshCarry(settings: CampaignSettings, targets: TargetChunking, now: number): CampaignCarry {
  const { total, chunkCount, chunkSize } = targets;
  return {
    chunks: Array.from({ length: chunkCount }, (_, chunk) => ({
      counts: emptyCounts(Math.min(chunkSize, total - chunk * chunkSize)),
      nextDueAt: 0,
      attempted: 0,
      attempts: 0,
      transientErrors: 0,
      wake: [],
    })),
    pacer: initialPacer(settings.rollout),
    paused: false,
    startedAt: now,
    deadlineAt: settings.deadlineMs === undefined ? null : now + settings.deadlineMs,
    recent: [],
    woken: [],
    batches: 0,
  };
}


export async function runCampaign(input: CampaignInput): Promise<CampaignSummary> {
  const { settings } = input;
  const campaignId = settings.campaignId;
  const batchesPerRun = input.batchesPerRun ?? 1_000;

  let carry = input.carry;
  let ending: { state: 'cancelled' | 'aborted'; reason: string } | null = null;
  let cancelRequest: string | null = null;
  let finished: CampaignSummary | null = null;
  /** Pause, resume, cancel and reconnect signals: anything that can change what the loop does next. */
  let controlEvents = 0;
  /** The reconnect signals among them (a paused campaign only collects those). */
  let wakeEvents = 0;
  let completions = 0;
  let signalsThisRun = 0;
  let batchesThisRun = 0;
  let wakeInFlight = false;
  /** A pause that arrives while the targets are still being prepared holds from the first batch. */
  let pausedEarly = false;
  const inFlight = new Set<number>();
  const woken = new Set<string>(carry?.woken ?? []);

  // Summed over every chunk (hundreds for a million targets): kept until a chunk's report changes it.
  let totalsCache: TargetCounts | null = null;
  const totals = (): TargetCounts => {
    if (!carry) return emptyCounts();
    return (totalsCache ??= carry.chunks.reduce((sum, c) => addCounts(sum, c.counts), emptyCounts()));
  };
  const effort = (): { attempted: number; attempts: number; transientErrors: number } =>
    (carry?.chunks ?? []).reduce(
      (sum, c) => ({ attempted: sum.attempted + c.attempted, attempts: sum.attempts + c.attempts, transientErrors: sum.transientErrors + c.transientErrors }),
      { attempted: 0, attempts: 0, transientErrors: 0 },
    );

  const progress = (): CampaignProgress => {
    if (finished) return finished;
    const now = Date.now();
    const counts = totals();
    const work = effort();
    const ratePerMinute = carry ? measuredRatePerMinute(carry.recent, now, carry.startedAt, carry.pacer, RATE_WINDOW_MS) : 0;
    const remaining = counts.pending - counts.waiting;
    const state: CampaignProgress['state'] = ending?.state ?? (isPaused() ? 'paused' : 'running');
    const out: CampaignProgress = {
      campaignId,
      state,
      counts,
      retries: work.attempts - work.attempted,
      transientErrors: work.transientErrors,
      ratePerMinute,
      rateLimitPerMinute: carry?.pacer.ratePerMinute ?? null,
      etaSeconds: remaining === 0 ? 0 : ratePerMinute > 0 ? Math.round((remaining / ratePerMinute) * 60) : null,
      batches: carry?.batches ?? 0,
      startedAt: new Date(carry?.startedAt ?? now).toISOString(),
    };
    if (ending) out.reason = ending.reason;
    if (carry?.deadlineAt) out.deadlineAt = new Date(carry.deadlineAt).toISOString();
    if (carry?.paused && carry.pausedAt) out.pausedAt = new Date(carry.pausedAt).toISOString();
    return out;
  };

  const isEnding = (): boolean => finished !== null || ending !== null || cancelRequest !== null;
  const isPaused = (): boolean => (carry ? carry.paused : pausedEarly);

  setHandler(campaignProgressQuery, progress);
  setHandler(deviceOnlineSignal, (clientId: string) => {
    signalsThisRun += 1;
    if (isEnding() || typeof clientId !== 'string') return;
    woken.add(clientId);
    controlEvents += 1;
    wakeEvents += 1;
  });
  setHandler(
    pauseCampaignUpdate,
    async () => {
      if (carry) {
        carry.paused = true;
        carry.pausedAt = Date.now();
      } else pausedEarly = true;
      controlEvents += 1;
      // Answer once nothing is being published any more: from here on no message goes out.
      await condition(() => inFlight.size === 0 && !wakeInFlight);
      return progress();
    },
    {
      validator: () => {
        if (isEnding()) throw new Error('the campaign is ending; it cannot be paused');
        if (isPaused()) throw new Error('the campaign is already paused');
      },
    },
  );
  setHandler(
    resumeCampaignUpdate,
    () => {
      if (carry) {
        carry.paused = false;
        delete carry.pausedAt;
      }
      pausedEarly = false;
      controlEvents += 1;
      return progress();
    },
    {
      validator: () => {
        if (isEnding()) throw new Error('the campaign is ending; it cannot be resumed');
        if (!isPaused()) throw new Error('the campaign is not paused');
      },
    },
  );
  setHandler(
    cancelCampaignUpdate,
    async ({ reason }) => {
      cancelRequest = reason.trim();
      controlEvents += 1;
      await condition(() => finished !== null);
      return progress();
    },
    {
      validator: (request: { reason?: unknown } | undefined) => {
        const reason = typeof request?.reason === 'string' ? request.reason.trim() : '';
        if (!reason) throw new Error('a cancel needs a reason');
        if (reason.length > MAX_CANCEL_REASON) throw new Error(`the reason must be at most ${MAX_CANCEL_REASON} characters`);
        if (isEnding()) throw new Error('the campaign is already ending');
      },
    },
  );

  if (!carry) {
    // A list campaign's starter stored the targets (and marks the campaign running once this
    // workflow has started); a selector campaign's are resolved here, which marks it running.
    const prepared =
      input.targets ??
      (await bookkeeping.prepareCampaignTargets({
        campaignId,
        rollout: { batchSize: settings.rollout.batchSize, concurrency: settings.rollout.concurrency },
        ...(settings.selector ? { selector: settings.selector } : {}),
      }));
    carry = freshCarry(settings, prepared, Date.now());
    if (pausedEarly) {
      carry.paused = true;
      carry.pausedAt = Date.now();
    }
    upsertMemo({ campaignId, targets: prepared.total, transport: settings.transport });
  }
  const c: CampaignCarry = carry;
  const rollout = settings.rollout;

  const applyReport = (report: ChunkReport): void => {
    const chunk = c.chunks[report.chunk];
    if (!chunk) return;
    chunk.counts = report.counts;
    totalsCache = null;
    chunk.nextDueAt = report.nextDueAt;
    chunk.attempted = report.attempted;
    chunk.attempts = report.attempts;
    chunk.transientErrors = report.transientErrors;
  };

  const launchBatch = (chunk: number, now: number): void => {
    const state = c.chunks[chunk] as ChunkProgress;
    const limit = batchAllowance(rollout, c.pacer);
    c.pacer = reserve(c.pacer, limit, now);
    const wake = state.wake;
    state.wake = [];
    inFlight.add(chunk);
    c.batches += 1;
    batchesThisRun += 1;
    const batchId = `${workflowInfo().runId}/${batchesThisRun}`;
    publishing
      .publishCampaignBatch({
        campaignId,
        chunk,
        limit,
        requestSize: rollout.batchSize,
        transport: settings.transport,
        policy: settings.policy,
        batchId,
        ...(wake.length ? { wake } : {}),
        ...(settings.startAttempt ? { startAttempt: settings.startAttempt } : {}),
      })
      .then(
        (report) => {
          const at = Date.now();
          applyReport(report);
          c.pacer = refund(c.pacer, limit - report.published, at);
          if (report.published > 0) c.recent.push([at, report.published]);
          c.recent = c.recent.filter(([t]) => t > at - RATE_WINDOW_MS);
          if (rollout.exponentialRate) c.pacer = ramp(rollout, c.pacer, { delivered: totals().delivered, notified: effort().attempted });
        },
        (err: unknown) => {
          state.wake.push(...wake);
          if (!ending) ending = { state: 'aborted', reason: `publishing failed: ${failureMessage(err)}` };
        },
      )
      .finally(() => {
        inFlight.delete(chunk);
        completions += 1;
      });
  };

  const launchWakeLookup = (): void => {
    const clientIds = [...woken].slice(0, WAKE_LOOKUP_BATCH);
    for (const id of clientIds) woken.delete(id);
    wakeInFlight = true;
    bookkeeping
      .locateWaitingTargets({ campaignId, clientIds })
      .then(
        (entries) => {
          for (const entry of entries) c.chunks[entry.chunk]?.wake.push(entry.index);
        },
        (err: unknown) => log.warn('could not locate reconnected devices', { campaignId, error: failureMessage(err) }),
      )
      .finally(() => {
        wakeInFlight = false;
        completions += 1;
      });
  };

  const isReady = (chunk: ChunkProgress, index: number, now: number): boolean =>
    !inFlight.has(index) && (chunk.wake.length > 0 || (chunk.nextDueAt !== null && chunk.nextDueAt <= now));
  const earliestDue = (): number | null => {
    let earliest: number | null = null;
    c.chunks.forEach((chunk, index) => {
      if (inFlight.has(index)) return;
      const at = chunk.wake.length > 0 ? 0 : chunk.nextDueAt;
      if (at !== null && (earliest === null || at < earliest)) earliest = at;
    });
    return earliest;
  };
  const allFinal = (): boolean => c.chunks.every((chunk) => chunk.nextDueAt === null && chunk.wake.length === 0);
  const idle = (): boolean => inFlight.size === 0 && !wakeInFlight;

  for (;;) {
    if (cancelRequest !== null && !ending) ending = { state: 'cancelled', reason: cancelRequest };
    if (!ending) {
      const reason = settings.abort.length > 0 ? abortReason(settings.abort, totals()) : null;
      if (reason) ending = { state: 'aborted', reason };
    }
    if (ending) break;
    const now = Date.now();
    if (c.deadlineAt !== null && now >= c.deadlineAt) break;
    if (allFinal() && idle() && woken.size === 0) break;

    const info = workflowInfo();
    const newRunDue = info.continueAsNewSuggested || batchesThisRun >= batchesPerRun || signalsThisRun >= SIGNALS_PER_RUN;
    if (newRunDue && idle()) {
      // A cancel waits for the end of the campaign, so it must not hold up the continue-as-new.
      await condition(() => allHandlersFinished() || isEnding());
      if (!isEnding()) return continueAsNew<typeof runCampaign>({ ...input, carry: { ...c, woken: [...woken] } });
      continue;
    }
    // With every slot busy the run would never be idle: launch nothing more and let the batches in
    // flight finish.
    if (newRunDue) {
      const seenControl = controlEvents;
      const seenCompletions = completions;
      await condition(() => controlEvents !== seenControl || completions !== seenCompletions);
      continue;
    }

    if (c.paused) {
      // Reconnect signals are only collected while paused: they neither wake the loop nor restart
      // the deadline timer. The loop wakes for resume and cancel, a batch that finishes after the
      // pause (it may have failed: abort), and a run due to continue as new (collected signals
      // grow its history too).
      const seenControl = controlEvents;
      const seenWakes = wakeEvents;
      const seenCompletions = completions;
      const changed = (): boolean =>
        controlEvents - wakeEvents !== seenControl - seenWakes ||
        completions !== seenCompletions ||
        signalsThisRun >= SIGNALS_PER_RUN ||
        workflowInfo().continueAsNewSuggested;
      const untilDeadline = c.deadlineAt === null ? null : Math.max(1, c.deadlineAt - now);
      if (untilDeadline === null) await condition(changed);
      else await condition(changed, untilDeadline);
      continue;
    }
    if (woken.size > 0 && !wakeInFlight) {
      launchWakeLookup();
      continue;
    }
    const slot = nextSlot(c.pacer);
    if (inFlight.size < rollout.concurrency && slot <= now) {
      const ready = c.chunks.findIndex((chunk, index) => isReady(chunk, index, now));
      if (ready >= 0) {
        launchBatch(ready, now);
        continue;
      }
    }

    // Wait for what can change the picture: a control message, the next batch's time when a slot
    // is free, a finished batch when none is, the deadline when nothing runs. A timer only when
    // one is needed, to keep history short.
    const due = inFlight.size < rollout.concurrency ? earliestDue() : null;
    let wakeAt = due === null ? null : Math.max(due, slot);
    if (idle() && c.deadlineAt !== null) wakeAt = wakeAt === null ? c.deadlineAt : Math.min(wakeAt, c.deadlineAt);
    const seenControl = controlEvents;
    const seenCompletions = completions;
    // Rate-limited with a timer set for the next slot: a finished batch cannot start anything sooner.
    const changed = (): boolean =>
      controlEvents !== seenControl || (completions !== seenCompletions && (wakeAt === null || slot <= now || idle()));
    if (wakeAt === null) await condition(changed);
    else await condition(changed, Math.max(1, wakeAt - now));
  }

  await condition(idle);
  const reason = ending?.reason ?? 'the campaign deadline passed';
  const open = c.chunks.flatMap((chunk, index) => (chunk.counts.pending > 0 ? [index] : []));
  for (let from = 0; from < open.length; from += FINISH_CHUNKS_PER_ACTIVITY) {
    const reports = await bookkeeping.finishCampaignChunks({
      campaignId,
      chunks: open.slice(from, from + FINISH_CHUNKS_PER_ACTIVITY),
      ending: ending ? 'cancel' : 'expire',
      reason,
    });
    reports.forEach(applyReport);
  }
  const state = ending?.state ?? 'completed';
  const counts = totals();
  // The last step of every campaign, a few small writes: a local activity runs it in the workflow
  // task that decides it instead of a round trip through the server, with the regular activity as
  // the fallback.
  const finalState: { campaignId: string; state: CampaignState; counts: TargetCounts; reason?: string } = { campaignId, state, counts, ...(ending ? { reason: ending.reason } : {}) };
  await finishing.recordCampaignState(finalState).catch(() => bookkeeping.recordCampaignState(finalState));
  finished = { ...progress(), state, counts, etaSeconds: 0, finishedAt: new Date().toISOString() };
  await condition(allHandlersFinished);
  return finished;
}
