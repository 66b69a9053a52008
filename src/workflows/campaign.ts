import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  ParentClosePolicy,
  proxyLocalActivities,
  setHandler,
  startChild,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { CampaignSettings, CampaignState } from '../domain/schemas/campaign';
import type { TargetChunking, TargetCounts } from '../domain/campaign';
import {
  batchDone,
  batchFailed,
  beginBatch,
  beginReplyPoll,
  beginWakeLookup,
  beginJoin,
  cancel,
  close,
  closeRefusal,
  devicesJoined,
  joinDone,
  cancelRefusal,
  carryForNextRun,
  changedSince,
  chunksFinished,
  DEADLINE_REASON,
  decide,
  deviceOnline,
  replyCountsOf,
  replyPollDone,
  isEnding,
  isIdle,
  mark,
  newScheduler,
  pause,
  pauseRefusal,
  progress,
  resume,
  resumeRefusal,
  targetsPrepared,
  totals,
  wakeLookupDone,
  windowMemo,
  type CampaignCarry,
  type Decision,
  type RunLimits,
  type Scheduler,
} from '../domain/campaign-scheduler';
import { failureMessage } from '../domain/failures';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { rollbackSettings } from '../domain/campaign-rollback';
import { campaignWorkflowId } from '../domain/campaign';
import { CampaignIdKey, DeviceOperationKey } from '../domain/search-attributes';
import {
  cancelCampaignUpdate,
  campaignProgressQuery,
  closeCampaignUpdate,
  deviceOnlineSignal,
  devicesJoinedSignal,
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
 *
 * Continuous campaigns (a selector, `continuous`): devices provisioned or tagged to match later
 * are signalled (`devicesJoined`) or found by a periodic rescan of the device records, and join as
 * new chunks; the campaign does not complete before the `closeCampaign` update.
 *
 * Scheduling: before `schedule.startAt` and outside every maintenance window no batch starts (the
 * ones in flight finish); the wait shows in the progress and in the `waitingForWindow` memo entry.
 *
 * What to do when is decided by src/domain/campaign-scheduler.ts (pure, unit-tested); this file
 * wires the handlers to it and carries its decisions out.
 */

export type { CampaignCarry } from '../domain/campaign-scheduler';

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

const FINISH_CHUNKS_PER_ACTIVITY = 20;

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

export async function runCampaign(input: CampaignInput): Promise<CampaignSummary> {
  const { settings } = input;
  const campaignId = settings.campaignId;
  const s = newScheduler(settings, Date.now(), input.carry);
  let finished: CampaignSummary | null = null;
  const limits = (): RunLimits => ({ continueAsNewSuggested: workflowInfo().continueAsNewSuggested, batchesPerRun: input.batchesPerRun ?? 1_000 });

  // A rollback campaign names the campaign it rolls back.
  const links = settings.rollbackOf ? { rollbackOf: settings.rollbackOf } : {};
  setHandler(campaignProgressQuery, (): CampaignProgress => finished ?? { ...progress(s, Date.now()), ...links });
  setHandler(deviceOnlineSignal, (clientId: string) => deviceOnline(s, clientId));
  setHandler(devicesJoinedSignal, (clientIds: string[]) => devicesJoined(s, clientIds));
  setHandler(
    closeCampaignUpdate,
    () => {
      close(s);
      upsertMemo({ continuous: 'closed' });
      return progress(s, Date.now());
    },
    { validator: () => refuse(closeRefusal(s)) },
  );
  setHandler(
    pauseCampaignUpdate,
    async () => {
      pause(s, Date.now());
      // Answer once nothing is being published any more: from here on no message goes out.
      await condition(() => isIdle(s));
      return progress(s, Date.now());
    },
    { validator: () => refuse(pauseRefusal(s)) },
  );
  setHandler(
    resumeCampaignUpdate,
    () => {
      resume(s);
      return progress(s, Date.now());
    },
    { validator: () => refuse(resumeRefusal(s)) },
  );
  setHandler(
    cancelCampaignUpdate,
    async ({ reason }) => {
      cancel(s, reason);
      await condition(() => finished !== null);
      return finished ?? progress(s, Date.now());
    },
    { validator: (request: { reason?: unknown } | undefined) => refuse(cancelRefusal(s, request?.reason)) },
  );

  if (!s.prepared) {
    // A list campaign's starter stored the targets (and marks the campaign running once this
    // workflow has started); a selector campaign's are resolved here, which marks it running.
    const prepared =
      input.targets ??
      (await bookkeeping.prepareCampaignTargets({
        campaignId,
        rollout: { batchSize: settings.rollout.batchSize, concurrency: settings.rollout.concurrency },
        ...(settings.selector ? { selector: settings.selector } : {}),
      }));
    targetsPrepared(s, prepared, Date.now());
    upsertMemo({ campaignId, targets: prepared.total, transport: settings.transport, ...(settings.continuous ? { continuous: 'open' } : {}) });
  }

  // Upserted only when it changes: a campaign without a schedule never writes it.
  let memoWaiting = (workflowInfo().memo?.waitingForWindow as string | undefined) ?? null;
  for (;;) {
    const decision = decide(s, Date.now(), limits());
    const waiting = windowMemo(s, Date.now());
    if (waiting !== memoWaiting) {
      upsertMemo({ waitingForWindow: waiting });
      memoWaiting = waiting;
    }
    switch (decision.type) {
      case 'launchBatch':
        launchBatch(s, settings, decision.chunk);
        continue;
      case 'lookUpWoken':
        lookUpWoken(s);
        continue;
      case 'pollReplies':
        pollReplies(s, settings);
        continue;
      case 'joinTargets':
        joinTargets(s, decision.rescan);
        continue;
      case 'continueAsNew':
        // A cancel waits for the end of the campaign, so it must not hold up the continue-as-new.
        await condition(() => allHandlersFinished() || isEnding(s));
        if (!isEnding(s)) return continueAsNew<typeof runCampaign>({ ...input, carry: carryForNextRun(s) });
        continue;
      case 'finish':
        finished = { ...(await finish(s, decision, settings)), ...links };
        await condition(allHandlersFinished);
        return finished;
      case 'wait':
      case 'drain':
        await waitForChange(s, decision, limits);
    }
  }
}

function refuse(problem: string | null): void {
  if (problem) throw new Error(problem);
}

/** Waits until something the decision waits for has happened, or its time has come. */
async function waitForChange(s: Scheduler, decision: Extract<Decision, { type: 'wait' | 'drain' }>, limits: () => RunLimits): Promise<void> {
  const seen = mark(s);
  const changed = (): boolean => changedSince(s, seen, decision, limits());
  const until = decision.type === 'wait' ? decision.until : null;
  if (until === null) await condition(changed);
  else await condition(changed, Math.max(1, until - Date.now()));
}

/** Starts a batch in the background; its report (or failure) goes to the scheduler. */
function launchBatch(s: Scheduler, settings: CampaignSettings, chunk: number): void {
  const order = beginBatch(s, chunk, Date.now());
  publishing
    .publishCampaignBatch({
      campaignId: settings.campaignId,
      chunk,
      limit: order.limit,
      requestSize: settings.rollout.batchSize,
      transport: settings.transport,
      policy: settings.policy,
      batchId: `${workflowInfo().runId}/${order.sequence}`,
      ...(order.wake.length ? { wake: order.wake } : {}),
      ...(settings.startAttempt ? { startAttempt: settings.startAttempt } : {}),
      ...(settings.replies ? { expectReply: true } : {}),
      ...(settings.continuous ? { size: s.carry.chunks[chunk]?.counts.total ?? 0 } : {}),
    })
    .then(
      (report) => batchDone(s, order, report, Date.now()),
      (err: unknown) => batchFailed(s, order, failureMessage(err)),
    );
}

/** Looks up where reconnected devices' targets are, in the background. */
function lookUpWoken(s: Scheduler): void {
  bookkeeping.locateWaitingTargets({ campaignId: s.campaignId, clientIds: beginWakeLookup(s) }).then(
    (entries) => wakeLookupDone(s, entries),
    (err: unknown) => {
      log.warn('could not locate reconnected devices', { campaignId: s.campaignId, error: failureMessage(err) });
      wakeLookupDone(s, []);
    },
  );
}

/** Adds the devices that joined a continuous campaign (signalled, or found by a rescan) as a new chunk, in the background. */
function joinTargets(s: Scheduler, rescan: boolean): void {
  const order = beginJoin(s, rescan, Date.now());
  bookkeeping
    .joinCampaignTargets({
      campaignId: s.campaignId,
      chunk: order.chunk,
      size: order.size,
      total: order.total,
      ...(order.clientIds ? { clientIds: order.clientIds } : {}),
      ...(order.since !== undefined ? { since: order.since } : {}),
    })
    .then(
      (result) => joinDone(s, order, result),
      (err: unknown) => {
        log.warn('could not add the devices that joined', { campaignId: s.campaignId, error: failureMessage(err) });
        joinDone(s, order, null);
      },
    );
}

/** Reads the device-reported execution counts in the background (the activity times out overdue targets first). */
function pollReplies(s: Scheduler, settings: CampaignSettings): void {
  const timeoutMs = s.replies?.timeoutMs ?? 0;
  const retry = s.replies?.retry;
  beginReplyPoll(s, Date.now());
  // Without retries the activity waits (up to the interval) for the open executions to settle: the
  // interval passes there, and the next poll is due when it answers, with no timer in between.
  const wait = retry ? { retry, transport: settings.transport, policy: settings.policy } : { settleWithinMs: s.replies?.pollMs ?? 0 };
  bookkeeping.pollCampaignReplies({ campaignId: s.campaignId, timeoutMs, ...wait }).then(
    (counts) => replyPollDone(s, replyCountsOf(counts)),
    (err: unknown) => {
      log.warn('could not read the execution counts', { campaignId: s.campaignId, error: failureMessage(err) });
      replyPollDone(s, null);
    },
  );
}

/** Ends the open targets, records the final state and returns the summary. */
async function finish(s: Scheduler, decision: Extract<Decision, { type: 'finish' }>, settings: CampaignSettings): Promise<CampaignSummary> {
  const { campaignId } = s;
  for (let from = 0; from < decision.openChunks.length; from += FINISH_CHUNKS_PER_ACTIVITY) {
    const reports = await bookkeeping.finishCampaignChunks({
      campaignId,
      chunks: decision.openChunks.slice(from, from + FINISH_CHUNKS_PER_ACTIVITY),
      ending: decision.ending,
      reason: decision.reason ?? DEADLINE_REASON,
    });
    chunksFinished(s, reports);
  }
  if (s.replies) {
    // Executions still open: TIMED_OUT at the deadline, CANCELED when the campaign was cancelled or aborted.
    const counts = await bookkeeping.endCampaignReplies({ campaignId, status: decision.ending === 'expire' ? 'TIMED_OUT' : 'CANCELED', ...(s.replies.retry ? { withRetries: true } : {}) });
    s.carry.replies = { counts: replyCountsOf(counts), polledAt: Date.now() };
  }
  const counts = totals(s);
  // The last step of every campaign, a few small writes: a local activity runs it in the workflow
  // task that decides it instead of a round trip through the server, with the regular activity as
  // the fallback.
  const finalState: { campaignId: string; state: CampaignState; counts: TargetCounts; reason?: string } = {
    campaignId,
    state: decision.state,
    counts,
    ...(decision.reason !== undefined ? { reason: decision.reason } : {}),
  };
  await finishing.recordCampaignState(finalState).catch(() => bookkeeping.recordCampaignState(finalState));
  const rollback = decision.state === 'aborted' && settings.rollback ? await startRollback(settings) : null;
  s.finished = true;
  return { ...progress(s, Date.now()), state: decision.state, counts, etaSeconds: 0, finishedAt: new Date().toISOString(), ...(rollback ? { rollback } : {}) };
}

/**
 * Rollback on abort (src/domain/campaign-rollback.ts): stores campaign `<id>-rollback` and starts
 * its workflow as a child that outlives this one (ParentClosePolicy ABANDON). Idempotent: the
 * activity writes the same record again, and a child already started (a replay, a retried task)
 * is the one. Returns the rollback's id, or null when no target succeeded or was in progress.
 */
async function startRollback(settings: CampaignSettings): Promise<string | null> {
  const prepared = await bookkeeping.prepareRollbackCampaign({
    campaignId: settings.campaignId,
    rollout: { batchSize: settings.rollout.batchSize, concurrency: settings.rollout.concurrency },
  });
  if (!prepared) return null;
  const child = rollbackSettings(settings, prepared.startAttempt);
  try {
    await startChild('runCampaign', {
      workflowId: campaignWorkflowId(child.campaignId),
      args: [{ settings: child, targets: prepared.targets }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: CampaignIdKey, value: child.campaignId },
        { key: DeviceOperationKey, value: 'campaign' },
      ],
      memo: { campaignId: child.campaignId, rollbackOf: settings.campaignId, transport: child.transport },
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  return child.campaignId;
}
