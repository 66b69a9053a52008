import { randomBytes } from 'node:crypto';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import {
  campaignWorkflowId,
  CampaignRequest,
  chunkSizeFor,
  isFinalCampaignState,
  MAX_MESSAGE_BYTES,
  type CampaignRequestInput,
  type CampaignSettings,
  type CampaignSchedule,
  type CampaignTarget,
  type MessageTemplate,
  type ScheduleSettings,
  type TargetChunking,
} from '../../domain/schemas/campaign';
import { messageBytes, renderMessage } from '../../domain/schemas/campaign-message';
import { templateVariables } from '../../domain/schemas/campaign-template';
import { InputError, parseInput } from '../../domain/input-error';
import { DEFAULT_DEVICE_TOPICS, type DeviceTopics } from '../../domain/device-topics';
import { CampaignIdKey, DeviceOperationKey } from '../../domain/search-attributes';
import type { History } from '../../store';
import { CampaignStore, type CampaignRecord, type CampaignResultRow, type CampaignTargetRecord } from '../../store/campaigns';
import { JobExecutionStore } from '../../store/job-executions';
import { replyCountsOf, type ReplyCounts } from '../../domain/campaign-scheduler';
import { rollbackCampaignId } from '../../domain/campaign-rollback';
import { wakeCampaignsWaitingFor, workflowClosed } from '../../temporal/campaign-wake';
import {
  campaignProgressQuery,
  cancelCampaignUpdate,
  closeCampaignUpdate,
  pauseCampaignUpdate,
  resumeCampaignUpdate,
  type CampaignProgress,
} from '../../contracts/campaign';
import type { runCampaign } from '../../workflows/campaign';

/**
 * Campaigns in the client library (`ops.campaigns`): start one (targets and message stored in
 * MongoDB first, then the workflow `campaign/<id>`), read its progress, steer it, export results.
 * Everything a caller gives is checked here, every target's topic and payload rendered once, before
 * anything is written or started.
 */

export interface CampaignOpsDeps {
  temporal: Client;
  taskQueue: string;
  history: History;
  /** Where devices report jobs (JOB_STATUS_TOPIC): a job's MQTT 5 response topic; default DEFAULT_DEVICE_TOPICS. */
  topics?: DeviceTopics;
}

export interface StartedCampaign {
  campaignId: string;
  workflowId: string;
  /** The first run's id (later runs follow by continue-as-new). */
  runId: string;
  /** Known at once for a target list; selector campaigns resolve theirs when they start. */
  total?: number;
  /** Client ids listed more than once (each gets one message). */
  duplicates?: number;
}

export class CampaignExistsError extends Error {
  readonly type = 'CampaignExistsError';
  constructor(
    readonly campaignId: string,
    detail = 'choose another id',
  ) {
    super(`campaign ${campaignId} exists already; ${detail}`);
    this.name = 'CampaignExistsError';
  }
}

/**
 * How long a campaign id stays with a start that has stored its record but not started its
 * workflow yet: another start with the id waits this long before taking it over (writing 1,000,000
 * targets takes seconds).
 */
export const START_LEASE_MS = 60_000;

export class CampaignNotFoundError extends Error {
  readonly type = 'CampaignNotFoundError';
  constructor(readonly campaignId: string) {
    super(`no campaign ${campaignId}`);
    this.name = 'CampaignNotFoundError';
  }
}

/** A pause, resume or cancel the campaign refused (its validator's reason), or a campaign that has ended. */
export class CampaignControlError extends Error {
  readonly type = 'CampaignControlError';
  constructor(message: string) {
    super(message);
    this.name = 'CampaignControlError';
  }
}

const MAX_REPORTED_PROBLEMS = 20;
/** With offline.wait and no deadline, waiting targets end as offline after a day. */
export const DEFAULT_WAIT_DEADLINE_MS = 86_400_000;

export function newCampaignId(now = new Date()): string {
  return `c-${now.toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
}

function dedupe(targets: readonly CampaignTarget[]): { unique: CampaignTarget[]; duplicates: number } {
  const seen = new Set<string>();
  const unique: CampaignTarget[] = [];
  for (const target of targets) {
    if (seen.has(target.clientId)) continue;
    seen.add(target.clientId);
    unique.push(target);
  }
  return { unique, duplicates: targets.length - unique.length };
}

/** Renders every target's message once, so a bad value or an oversized message stops the start. */
function checkRenderable(message: MessageTemplate, targets: readonly CampaignTarget[]): void {
  // The same problem (a missing column, say) is reported once, with how many targets have it.
  const byReason = new Map<string, string[]>();
  const note = (reason: string, clientId: string): void => {
    const ids = byReason.get(reason);
    if (ids) ids.push(clientId);
    else if (byReason.size < MAX_REPORTED_PROBLEMS) byReason.set(reason, [clientId]);
  };
  for (const target of targets) {
    try {
      const bytes = messageBytes(renderMessage(message, target));
      if (bytes > MAX_MESSAGE_BYTES) note(`the message is over EMQX's ${MAX_MESSAGE_BYTES} bytes`, target.clientId);
    } catch (err) {
      note((err as Error).message, target.clientId);
    }
  }
  if (byReason.size === 0) return;
  throw new InputError(
    [...byReason].map(([reason, ids]) =>
      ids.length === 1 ? `target ${ids[0]}: ${reason}` : `${ids.length} targets (${ids.slice(0, 3).join(', ')}${ids.length > 3 ? ', ...' : ''}): ${reason}`,
    ),
  );
}

function messageVariables(message: MessageTemplate): string[] {
  const texts = [message.topic, message.payload.format === 'base64' ? '' : message.payload.text];
  return [...new Set(texts.flatMap(templateVariables))].filter((v) => v !== 'clientid');
}

/**
 * Everything checked before a campaign is stored or started: the request's shape, every target's
 * rendered topic and payload. Returns the parsed request with the target list de-duplicated.
 */
export interface ValidatedCampaignRequest {
  request: CampaignRequest;
  /** The listed targets without duplicates (absent for selector campaigns). */
  targets?: CampaignTarget[];
  duplicates: number;
}

interface StartOptions {
  taskQueue?: string;
  batchesPerRun?: number;
}

/** Result rows whose executions are read at once. */
const RESULT_PAGE = 500;

/** How often a campaign with replies reads its targets' execution counts. */
export const REPLY_POLL_MS = 5_000;

/**
 * A campaign with replies is a job whose id is the campaign id: `${jobid}` in the topic and the
 * payload becomes it (the default job topic, `devices/${clientid}/jobs/${jobid}`, names the job to
 * the device), and the message carries it as the MQTT 5 user property `jobId` too. As a command
 * does (src/activities/command.ts), it carries where to answer as MQTT 5 properties: the response
 * topic is the target's job status topic, the correlation data the job id (unless the request set
 * its own).
 */
function withJobId(request: CampaignRequest, topics: DeviceTopics): CampaignRequest {
  if (!request.expectReply) return request;
  const campaignId = request.campaignId ?? newCampaignId();
  const rollback = request.rollback ? { rollback: { message: jobMessage(request.rollback.message, rollbackCampaignId(campaignId), topics) } } : {};
  return { ...request, campaignId, message: jobMessage(request.message, campaignId, topics), ...rollback };
}

/** The message of job `jobId`: `${jobid}` filled in, the `jobId` user property and the MQTT 5 response topic and correlation data set. */
function jobMessage(message: MessageTemplate, jobId: string, topics: DeviceTopics): MessageTemplate {
  const fill = (text: string): string => text.replaceAll('${jobid}', jobId);
  const payload = message.payload.format === 'base64' ? message.payload : { ...message.payload, text: fill(message.payload.text) };
  const properties = {
    responseTopic: fill(topics.jobStatus),
    correlationData: jobId,
    ...message.properties,
    userProperties: { ...message.properties?.userProperties, jobId },
  };
  return { ...message, topic: fill(message.topic), payload, properties };
}

/** A rollback's targets are client ids only: its message may use `${clientid}` and `${jobid}` alone. */
function checkRollback(request: CampaignRequest): void {
  if (!request.rollback) return;
  const needed = messageVariables(request.rollback.message);
  if (needed.length > 0) throw new InputError([`rollback.message: a rollback's targets have no per-target values, but the template uses \${${needed.join('}, ${')}}`]);
  checkRenderable(request.rollback.message, [{ clientId: 'rollback-device' }]);
}

export function validateCampaignRequest(input: CampaignRequestInput, topics: DeviceTopics = DEFAULT_DEVICE_TOPICS): ValidatedCampaignRequest {
  const request = withJobId(parseInput(CampaignRequest, input), topics);
  checkRollback(request);
  if ('list' in request.targets) {
    const { unique, duplicates } = dedupe(request.targets.list);
    checkRenderable(request.message, unique);
    return { request, targets: unique, duplicates };
  }
  const needed = messageVariables(request.message);
  if (needed.length > 0) throw new InputError([`message: selected targets have no per-target values, but the template uses \${${needed.join('}, ${')}}`]);
  checkRenderable(request.message, [{ clientId: 'selected-device' }]);
  return { request, duplicates: 0 };
}

function scheduleSettings(schedule: CampaignSchedule): ScheduleSettings {
  return { ...(schedule.startAt !== undefined ? { startAt: Date.parse(schedule.startAt) } : {}), ...(schedule.windows ? { windows: schedule.windows } : {}) };
}

export class CampaignOps {
  private readonly store: CampaignStore;

  constructor(private readonly deps: CampaignOpsDeps) {
    this.store = new CampaignStore(deps.history.db);
  }

  handle(campaignId: string): WorkflowHandle<typeof runCampaign> {
    return this.deps.temporal.workflow.getHandle<typeof runCampaign>(campaignWorkflowId(campaignId));
  }

  /** Validates, stores the targets and the message, and starts the campaign workflow. */
  async start(input: CampaignRequestInput, options: StartOptions = {}): Promise<StartedCampaign> {
    return this.startValidated(validateCampaignRequest(input, this.deps.topics), options);
  }

  /** `start` for a request that already passed validateCampaignRequest (the CLI checks before connecting). */
  async startValidated(validated: ValidatedCampaignRequest, options: StartOptions = {}): Promise<StartedCampaign> {
    const { request } = validated;
    const listed = validated.targets ? { unique: validated.targets, duplicates: validated.duplicates } : undefined;
    const campaignId = request.campaignId ?? newCampaignId();
    const workflowId = campaignWorkflowId(campaignId);
    const deadlineMs = request.deadlineMs ?? (request.offline.wait ? DEFAULT_WAIT_DEADLINE_MS : undefined);

    let chunking: TargetChunking | undefined;
    if (listed) {
      const chunkSize = chunkSizeFor(listed.unique.length, request.rollout);
      chunking = { total: listed.unique.length, chunkCount: Math.ceil(listed.unique.length / chunkSize), chunkSize };
    }
    const record: CampaignRecord = {
      campaignId,
      workflowId,
      state: 'created',
      active: true,
      transport: request.transport,
      waitOffline: request.offline.wait,
      ...(request.expectReply ? { expectReply: true } : {}),
      ...(request.continuous ? { continuous: 'open' as const } : {}),
      createdAt: new Date().toISOString(),
      startAttempt: randomBytes(8).toString('hex'),
      targets: chunking ? { source: 'list', ...chunking } : { source: 'selector', ...('selector' in request.targets ? { selector: request.targets.selector } : {}) },
    };
    if (!(await this.store.createCampaign(record, request.message))) await this.takeOverFailedStart(record, request.message);
    if (listed && chunking) await this.store.writeChunks(campaignId, listed.unique, chunking.chunkSize);
    // A start that stalled past the lease may have lost the id to another start meanwhile: then
    // that one owns the stored campaign, and this one must not start a workflow on it.
    if ((await this.store.getCampaign(campaignId))?.startAttempt !== record.startAttempt) throw new CampaignExistsError(campaignId, 'another start with this id took it over');
    if (request.rollback) await this.store.setRollbackMessage(campaignId, request.rollback.message);

    const settings: CampaignSettings = {
      campaignId,
      transport: request.transport,
      rollout: request.rollout,
      policy: {
        retry: request.retry,
        offline: request.offline,
        ...(request.inProgressTimeoutMs !== undefined ? { inProgressTimeoutMs: request.inProgressTimeoutMs } : {}),
      },
      abort: request.abort,
      startAttempt: record.startAttempt,
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
      ...('selector' in request.targets ? { selector: request.targets.selector } : {}),
      ...(request.schedule ? { schedule: scheduleSettings(request.schedule) } : {}),
      ...(request.expectReply ? { replies: { timeoutMs: request.expectReply.timeoutMs, pollMs: REPLY_POLL_MS, ...(request.expectReply.retry ? { retry: request.expectReply.retry } : {}) } } : {}),
      ...(request.rollback ? { rollback: true } : {}),
      ...(request.continuous ? { continuous: { rescanMs: request.continuous.rescanIntervalMs } } : {}),
    };
    let runId: string;
    try {
      const handle = await this.deps.temporal.workflow.start<typeof runCampaign>('runCampaign', {
        workflowId,
        taskQueue: options.taskQueue ?? this.deps.taskQueue,
        // A list campaign's workflow starts publishing at once: it is told how its targets are stored.
        args: [{ settings, ...(chunking ? { targets: chunking } : {}), ...(options.batchesPerRun ? { batchesPerRun: options.batchesPerRun } : {}) }],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: CampaignIdKey, value: campaignId },
          { key: DeviceOperationKey, value: 'campaign' },
        ],
        memo: { campaignId, topic: request.message.topic, transport: request.transport },
      });
      runId = handle.firstExecutionRunId;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new CampaignExistsError(campaignId);
      throw err;
    }
    // A selector campaign's workflow marks itself running when it has resolved its targets. This
    // mark only serves listings: if it fails, the record says `created` until the campaign ends
    // (its final state is always recorded), and the campaign runs either way, so the start succeeded.
    if (listed) await this.store.markStarted(campaignId).catch(() => undefined);
    return { campaignId, workflowId, runId, ...(listed ? { total: listed.unique.length, duplicates: listed.duplicates } : {}) };
  }

  /**
   * A start that stored its campaign but never started the workflow (it failed, or its process
   * died) may be repeated with the same id once its lease has passed: its record is replaced and
   * everything it or its campaign wrote is deleted. Throws CampaignExistsError otherwise.
   */
  private async takeOverFailedStart(record: CampaignRecord, message: MessageTemplate): Promise<void> {
    const { campaignId } = record;
    const existing = await this.store.getCampaign(campaignId);
    if (existing?.state !== 'created' || (await this.workflowExists(record.workflowId))) throw new CampaignExistsError(campaignId);
    if (Date.now() - Date.parse(existing.createdAt) < START_LEASE_MS) {
      throw new CampaignExistsError(campaignId, `a start with this id is under way or failed less than ${START_LEASE_MS / 1000} s ago; retry later or choose another id`);
    }
    if (!(await this.store.replaceCreatedCampaign(record, message, existing.startAttempt))) throw new CampaignExistsError(campaignId);
    await this.store.deleteCampaignData(campaignId);
  }

  private async workflowExists(workflowId: string): Promise<boolean> {
    try {
      await this.deps.temporal.workflow.getHandle(workflowId).describe();
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  /** Live progress while the workflow runs; the recorded outcome once it has ended. */
  async status(campaignId: string): Promise<CampaignProgress> {
    const handle = this.handle(campaignId);
    let status: string;
    try {
      status = (await handle.describe()).status.name;
    } catch (err) {
      if (!workflowClosed(err)) throw err;
      return this.recordedStatus(campaignId);
    }
    if (status === 'COMPLETED') return handle.result();
    if (status !== 'RUNNING') return this.recordedStatus(campaignId, `the campaign workflow is ${status.toLowerCase().replace(/_/g, ' ')}`);
    try {
      return await handle.query(campaignProgressQuery);
    } catch (err) {
      // No worker answers (all stopped or busy): what MongoDB recorded, said so.
      const recorded = await this.recordedStatus(campaignId);
      return { ...recorded, state: 'running', note: `live progress unavailable: ${(err as Error).message}` };
    }
  }

  /** From the campaign document; `ended` explains a workflow that stopped without recording its end. */
  private async recordedStatus(campaignId: string, ended?: string): Promise<CampaignProgress> {
    const record = await this.store.getCampaign(campaignId);
    if (!record) throw new CampaignNotFoundError(campaignId);
    const state = isFinalCampaignState(record.state) ? record.state : 'aborted';
    const unfinished = state !== record.state;
    const total = record.targets.total ?? 0;
    const reason = record.reason ?? (unfinished ? (ended ?? 'the campaign workflow is not running') : undefined);
    return {
      campaignId,
      state,
      ...(reason ? { reason } : {}),
      counts: record.counts ?? { total, delivered: 0, offline: 0, failed: 0, timedOut: 0, cancelled: 0, pending: total, waiting: 0 },
      retries: 0,
      transientErrors: 0,
      ratePerMinute: 0,
      rateLimitPerMinute: null,
      etaSeconds: null,
      batches: 0,
      startedAt: record.startedAt ?? record.createdAt,
      ...(record.finishedAt ? { finishedAt: record.finishedAt } : {}),
      // The executions are in MongoDB whatever became of the workflow.
      ...(record.expectReply ? { replies: await this.recordedReplies(campaignId) } : {}),
      ...(record.rollback ? { rollback: record.rollback } : {}),
      ...(record.rollbackOf ? { rollbackOf: record.rollbackOf } : {}),
      // A campaign whose workflow has ended takes no device any more.
      ...(record.continuous ? { continuous: 'closed' as const } : {}),
    };
  }

  /** The executions' counts as MongoDB has them, with the retries when there were any. */
  private async recordedReplies(campaignId: string): Promise<ReplyCounts> {
    const executions = new JobExecutionStore(this.deps.history.db);
    const [counts, retries] = await Promise.all([executions.counts(campaignId), executions.retryCount(campaignId)]);
    return replyCountsOf({ ...counts, ...(retries > 0 ? { retries } : {}) });
  }

  private async control(campaignId: string, run: (handle: WorkflowHandle<typeof runCampaign>) => Promise<CampaignProgress>): Promise<CampaignProgress> {
    try {
      return await run(this.handle(campaignId));
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = err.cause?.message ?? err.message;
        throw new CampaignControlError(`campaign ${campaignId}: ${cause}`);
      }
      if (workflowClosed(err)) throw new CampaignControlError(`campaign ${campaignId} is not running`);
      throw err;
    }
  }

  /** Stops publishing; resolves when no batch is in flight any more. */
  async pause(campaignId: string): Promise<CampaignProgress> {
    return this.control(campaignId, (h) => h.executeUpdate(pauseCampaignUpdate));
  }

  async resume(campaignId: string): Promise<CampaignProgress> {
    return this.control(campaignId, (h) => h.executeUpdate(resumeCampaignUpdate));
  }

  /** Stops the campaign for good: open targets end as cancelled with the reason. Resolves when it has ended. */
  async cancel(campaignId: string, reason: string): Promise<CampaignProgress> {
    const trimmed = reason.trim();
    if (!trimmed) throw new InputError(['reason: a cancel needs a reason']);
    return this.control(campaignId, (h) => h.executeUpdate(cancelCampaignUpdate, { args: [{ reason: trimmed }] }));
  }

  /** A continuous campaign takes no more devices; it completes once the targets it has are final. */
  async close(campaignId: string): Promise<CampaignProgress> {
    return this.control(campaignId, (h) => h.executeUpdate(closeCampaignUpdate));
  }

  /** Every target in list order with its final status, or where it stands. */
  async *results(campaignId: string): AsyncGenerator<CampaignResultRow> {
    const record = await this.store.getCampaign(campaignId);
    if (!record) throw new CampaignNotFoundError(campaignId);
    const rows = this.store.results(campaignId, record.targets.chunkCount ?? 0);
    if (!record.expectReply) {
      yield* rows;
      return;
    }
    const executions = new JobExecutionStore(this.deps.history.db);
    let page: CampaignResultRow[] = [];
    const withReplies = async function* (): AsyncGenerator<CampaignResultRow> {
      const found = await executions.many(campaignId, page.map((row) => row.clientId));
      for (const row of page) {
        const execution = found.get(row.clientId);
        yield execution
          ? {
              ...row,
              replyStatus: execution.status,
              ...(execution.progress !== undefined ? { replyProgress: execution.progress } : {}),
              ...(execution.details !== undefined ? { replyDetails: execution.details } : {}),
              ...(execution.retries !== undefined ? { replyRetries: execution.retries } : {}),
            }
          : row;
      }
      page = [];
    };
    for await (const row of rows) {
      page.push(row);
      if (page.length >= RESULT_PAGE) yield* withReplies();
    }
    yield* withReplies();
  }

  /** The per-target final records (one per target that reached a final status). */
  async finalRecords(campaignId: string): Promise<CampaignTargetRecord[]> {
    return this.store.targetRecords(campaignId);
  }

  /**
   * Tells the campaigns waiting for this device that it is back, for platforms with their own
   * presence source (with the webhook adapter, device workflows do it). Returns the campaigns told.
   */
  async notifyDeviceOnline(clientId: string): Promise<string[]> {
    return wakeCampaignsWaitingFor(this.store, this.deps.temporal, clientId);
  }
}
