import { ApplicationFailure, Context, getClient, heartbeat, log } from '@temporalio/activity';
import { chunkSizeFor, isFinal, isFinalCampaignState, type CampaignState, type CampaignTarget, type ChunkReport, type MessageTemplate, type Rollout, type TargetChunking, type TargetCounts, type TargetPolicy, type TargetSelector, type Transport } from '../domain/schemas/campaign';
import { renderMessage, type RenderedMessage } from '../domain/schemas/campaign-message';
import { ChunkLedger } from '../domain/campaign-chunk';
import { applyOutcome, cancel, confirmAtDevice, expire, isDue, retryNow, wake, type AttemptOutcome, type DeviceSession, type TargetState } from '../domain/campaign-target-state';
import { TemplateError } from '../domain/schemas/campaign-template';
import { EmqxBadRequestError, EmqxError, type EmqxClient, type PublishMessage, type PublishOutcome } from '../emqx';
import type { MqttPublisher } from '../emqx/mqtt-publisher';
import type { History } from '../store';
import type { JobExecution, JobRetrySettings, JobStatusCounts } from '../domain/job-status';
import { CampaignStore, chunkingOf, finalRecord, type CampaignRecord, type WaitingEntry } from '../store/campaigns';
import { rollbackCampaignId } from '../domain/campaign-rollback';
import { campaignWorkflowId } from '../domain/campaign';
import { JobExecutionStore } from '../store/job-executions';
import { wakeCampaignsWaitingFor } from '../temporal/campaign-wake';
import { selectorFilter } from '../domain/campaign-selector';
import { JOIN_BATCH } from '../domain/campaign-scheduler';
import { asActivityFailure, mapPooled } from './failures';

/**
 * Campaign steps. The publishing activity handles one batch of one chunk: it reads the chunk's
 * targets and states, publishes the due targets in /publish/bulk requests of the campaign's batch
 * size (or over MQTT), applies the retry policy to each outcome, and after each request inserts the
 * final records and rewrites the chunk's state. It owns its chunk while it runs (the workflow never
 * runs two on one chunk), and a retried run recognises a batch already (partly) applied by its id,
 * so nothing is published twice by us; only a crash between EMQX's answer and the state write
 * re-sends that one request (at-least-once, like EMQX's own QoS 1 delivery; the first final record
 * written for a target is the one kept).
 */

export interface CampaignActivityDeps {
  emqx: EmqxClient;
  history: History;
  /** Needed only for campaigns with transport `mqtt`. */
  mqttPublisher?: MqttPublisher;
}

export interface PublishBatchInput {
  campaignId: string;
  chunk: number;
  /** At most this many targets (the rollout allowance). */
  limit: number;
  /** Targets per /publish/bulk request (or MQTT batch); default: `limit`. */
  requestSize?: number;
  transport: Transport;
  policy: TargetPolicy;
  /** Chunk positions of targets whose device reconnected: tried again now. */
  wake?: number[];
  /** Unique per batch (workflow run id + sequence): a retried activity does not publish the batch again. */
  batchId: string;
  /** The start this workflow belongs to: a campaign another start took over is not published by it. */
  startAttempt?: string;
  /** Continuous campaigns: the chunk's targets as the workflow knows them (a chunk grows as devices join). */
  size?: number;
  /** The targets report the job's execution: each delivered target's execution is queued (job id = campaign id). */
  expectReply?: boolean;
}

/** Open executions ended per read when a campaign times out or ends its targets' executions. */
const END_EXECUTIONS_BATCH = 500;
/** Executions sent back to QUEUED per read, and retries published per poll (the rest at the next one). */
const RETRY_BATCH = 500;

export interface PollRepliesInput {
  campaignId: string;
  timeoutMs: number;
  /** Retries per failure type: scheduled and published by the poll (docs/jobs.md). */
  retry?: JobRetrySettings;
  /** How retries are published: the campaign's transport and target policy. */
  transport?: Transport;
  policy?: TargetPolicy;
  /**
   * Without retries: wait up to this long for the open executions to settle before answering, so
   * the poll interval passes inside the activity, not in a workflow timer, and a job whose devices
   * all answered ends as soon as their reports are applied (docs/jobs.md).
   */
  settleWithinMs?: number;
}

/** Longest a reply poll waits for the open executions to settle (well within the heartbeat timeout). */
const SETTLE_WAIT_MAX_MS = 30_000;
/**
 * How often a waiting reply poll reads the counts again: every 500 ms, or less often when a read is
 * slow (a large job on a database without the `{jobId, status}` index in use), so that reading
 * takes at most a tenth of the time and does not slow down applying the reports it waits for.
 */
const SETTLE_CHECK_MS = 500;
const SETTLE_CHECK_SHARE = 10;

/** Execution counts as a campaign reads them; `retries`: retries so far, with retry settings only. */
export type ReplyTally = JobStatusCounts & { retries?: number };

export type CampaignEnding = 'expire' | 'cancel';

/** How many EMQX /publish calls run at once when a bulk request must be split to find a bad message. */
const SINGLE_PUBLISH_CONCURRENCY = 16;
const CACHED_CHUNKS = 64;
/** Client ids per `GET /clients?clientid=...` session lookup (each id is a query parameter). */
const SESSION_LOOKUP_SIZE = 100;

/** A small insertion-ordered cache for immutable data (message templates, chunk target lists). */
class BoundedCache<V> {
  private readonly entries = new Map<string, V>();
  constructor(private readonly capacity: number) {}
  async get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    const value = await load();
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, value);
    return value;
  }
}

function outcomeOfRest(outcome: PublishOutcome): AttemptOutcome {
  if (outcome.status === 'delivered') return { kind: 'delivered', messageId: outcome.id };
  if (outcome.status === 'no_subscriber') return { kind: 'no_subscriber' };
  // 131 failed_to_dispatch: subscribers matched but dispatch failed (e.g. a node restarting), worth retrying.
  if (outcome.reasonCode === 131) return { kind: 'transient', error: `EMQX could not dispatch: ${outcome.message}` };
  return { kind: 'rejected', error: `EMQX rejected the message: reason code ${outcome.reasonCode} ${outcome.message}` };
}

/**
 * EMQX's `/publish` and `/publish/bulk` message properties (`to_property/3` in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl;
 * response_topic and correlation_data as in emqx_mgmt_api_publish_SUITE `t_publish_api`).
 */
function toRestMessage(m: RenderedMessage): PublishMessage {
  const properties =
    m.messageExpiryInterval !== undefined || m.userProperties || m.responseTopic !== undefined || m.correlationData !== undefined
      ? {
          ...(m.messageExpiryInterval !== undefined ? { message_expiry_interval: m.messageExpiryInterval } : {}),
          ...(m.userProperties ? { user_properties: m.userProperties } : {}),
          ...(m.responseTopic !== undefined ? { response_topic: m.responseTopic } : {}),
          ...(m.correlationData !== undefined ? { correlation_data: m.correlationData } : {}),
        }
      : undefined;
  return {
    topic: m.topic,
    payload: m.payload,
    ...(m.binary ? { payload_encoding: 'base64' as const } : {}),
    qos: m.qos,
    retain: m.retain,
    ...(properties ? { properties } : {}),
  };
}

export function createCampaignActivities(deps: CampaignActivityDeps) {
  // Created on first use: unit tests of other activities build the whole set with a fake History.
  let campaignStore: CampaignStore | undefined;
  const storeOf = (): CampaignStore => (campaignStore ??= new CampaignStore(deps.history.db));
  let executionStore: JobExecutionStore | undefined;
  const executionsOf = (): JobExecutionStore => (executionStore ??= new JobExecutionStore(deps.history.db));

  /** Ends the job's open executions (with a reply timeout: those delivered that long ago), a batch at a time. */
  async function endExecutions(jobId: string, status: 'TIMED_OUT' | 'CANCELED', replyTimeoutMs?: number): Promise<void> {
    const timeout = replyTimeoutMs !== undefined ? { now: Date.now(), timeoutMs: replyTimeoutMs } : undefined;
    while ((await executionsOf().endOpen(jobId, status, END_EXECUTIONS_BATCH, timeout)) === END_EXECUTIONS_BATCH) heartbeat();
  }
  /** The job's counts once no execution is open, or once `withinMs` (capped) has passed, whichever comes first. */
  async function countsOnceSettled(jobId: string, withinMs: number): Promise<JobStatusCounts> {
    const until = Date.now() + Math.min(withinMs, SETTLE_WAIT_MAX_MS);
    for (;;) {
      const readAt = Date.now();
      const counts = await executionsOf().counts(jobId);
      const left = until - Date.now();
      if (counts.QUEUED + counts.IN_PROGRESS === 0 || left <= 0) return counts;
      heartbeat();
      // The last pause ends at `until`: answering earlier would leave the workflow a timer for the rest.
      await Context.current().sleep(Math.min(left, Math.max(SETTLE_CHECK_MS, (Date.now() - readAt) * SETTLE_CHECK_SHARE)));
    }
  }
  /**
   * Publishes the retries that are due (up to RETRY_BATCH), same job id: each attempt is begun
   * (marked sent; reports received from then on answer it) just before its publish. One EMQX did
   * not take is due again at the next poll; unanswered, it ends TIMED_OUT a reply timeout after
   * its first try. A crash between the two leaves the attempt sent but unpublished: it ends
   * TIMED_OUT too (and is retried if TIMED_OUT has retries left).
   */
  async function publishRetries(jobId: string, transport: Transport, policy: TargetPolicy): Promise<void> {
    const due = await executionsOf().dueRetries(jobId, RETRY_BATCH, Date.now());
    if (due.length === 0) return;
    const template = await templateOf(jobId);
    // By chunk, to read each chunk's targets (their per-target values) once; -1: chunk unknown.
    const byChunk = new Map<number, JobExecution[]>();
    for (const execution of due) {
      const chunk = execution.chunk ?? -1;
      const list = byChunk.get(chunk) ?? [];
      list.push(execution);
      byChunk.set(chunk, list);
    }
    for (const [chunk, executions] of byChunk) {
      const targetList = chunk >= 0 ? await targetsOf(jobId, chunk) : await findTargets(jobId, executions.map((e) => e.clientId));
      const known = new Map(targetList.map((t) => [t.clientId, t]));
      const at = Date.now();
      const begun: JobExecution[] = [];
      for (const e of executions) if ((await executionsOf().beginAttempt(jobId, e.clientId, e.attempt ?? 1, at)).outcome === 'applied') begun.push(e);
      if (begun.length === 0) continue;
      const targets = begun.map((e) => known.get(e.clientId) ?? { clientId: e.clientId });
      const outcomes = await publishTargets(transport, template, targets, policy);
      heartbeat();
      for (const [k, outcome] of outcomes.entries()) {
        if (outcome.kind === 'delivered') continue;
        const e = begun[k] as JobExecution;
        log.info('a job retry was not delivered; due again at the next poll', { jobId, clientId: e.clientId, outcome: outcome.kind });
        await executionsOf().attemptNotDelivered(jobId, e.clientId, e.attempt ?? 1, Date.now());
      }
    }
  }
  /**
   * The targets of these clients, looked for chunk by chunk: for executions without a chunk (their
   * device's report was recorded before the QUEUED write, which then leaves the record alone).
   */
  async function findTargets(campaignId: string, clientIds: readonly string[]): Promise<CampaignTarget[]> {
    const wanted = new Set(clientIds);
    const found: CampaignTarget[] = [];
    const chunkCount = (await storeOf().getCampaign(campaignId))?.targets.chunkCount ?? 0;
    for (let chunk = 0; chunk < chunkCount && found.length < wanted.size; chunk++) {
      for (const target of await targetsOf(campaignId, chunk)) if (wanted.has(target.clientId)) found.push(target);
    }
    return found;
  }
  const templates = new BoundedCache<MessageTemplate>(32);
  const chunkTargets = new BoundedCache<CampaignTarget[]>(CACHED_CHUNKS);

  const templateOf = (campaignId: string): Promise<MessageTemplate> =>
    templates.get(campaignId, async () => {
      const message = await storeOf().messageOf(campaignId);
      if (!message) throw ApplicationFailure.nonRetryable(`campaign ${campaignId} does not exist`, 'CampaignNotFound');
      return message;
    });
  /** A chunk's targets; a continuous campaign's chunk grows as devices join, so its size is part of the key. */
  const targetsOf = (campaignId: string, chunk: number, size?: number): Promise<CampaignTarget[]> =>
    chunkTargets.get(`${campaignId}/${chunk}${size === undefined ? '' : `/${size}`}`, () => storeOf().readChunkTargets(campaignId, chunk));

  /** One bulk request; a whole-batch 400 is split into single publishes to find the bad message(s). */
  async function publishRest(messages: PublishMessage[]): Promise<AttemptOutcome[]> {
    try {
      return (await deps.emqx.publishBulk(messages)).map(outcomeOfRest);
    } catch (err) {
      if (err instanceof EmqxBadRequestError && messages.length > 1) {
        return mapPooled(messages, SINGLE_PUBLISH_CONCURRENCY, async (message) => {
          const [outcome] = await publishRest([message]);
          heartbeat();
          return outcome as AttemptOutcome;
        });
      }
      if (err instanceof EmqxBadRequestError) return [{ kind: 'rejected', error: err.message }];
      // Sent, answer lost: EMQX may have published every message; the target policy decides.
      if (err instanceof EmqxError && err.retryable && err.mayHaveApplied) return messages.map(() => ({ kind: 'unknown', error: err.message }));
      if (err instanceof EmqxError && err.retryable) return messages.map(() => ({ kind: 'transient', error: err.message }));
      throw asActivityFailure(err);
    }
  }

  async function publishMqtt(messages: RenderedMessage[]): Promise<AttemptOutcome[]> {
    const publisher = deps.mqttPublisher;
    if (!publisher) {
      throw ApplicationFailure.nonRetryable('this worker has no MQTT publisher: set CAMPAIGN_MQTT_URL (and credentials)', 'MqttPublisherMissing');
    }
    const outcomes = await publisher.publishBatch(
      messages.map((m) => ({
        topic: m.topic,
        payload: Buffer.from(m.payload, m.binary ? 'base64' : 'utf8'),
        qos: m.qos,
        retain: m.retain,
        ...(m.messageExpiryInterval !== undefined ? { messageExpiryInterval: m.messageExpiryInterval } : {}),
        ...(m.userProperties ? { userProperties: m.userProperties } : {}),
        ...(m.responseTopic !== undefined ? { responseTopic: m.responseTopic } : {}),
        ...(m.correlationData !== undefined ? { correlationData: Buffer.from(m.correlationData, 'utf8') } : {}),
      })),
    );
    return outcomes.map((o): AttemptOutcome => {
      if (o.status === 'published') return { kind: 'delivered' };
      if (o.status === 'no_subscriber') return { kind: 'no_subscriber' };
      return o.retryable ? { kind: 'transient', error: o.message } : { kind: 'rejected', error: o.message };
    });
  }

  /**
   * The sessions EMQX has for these devices (`GET /clients` with repeated `clientid`, which lists
   * offline persistent sessions too). A session without any subscription counts as none: no
   * message can have been routed to it.
   */
  async function sessionsOf(clientIds: readonly string[]): Promise<Map<string, DeviceSession>> {
    const found = new Map<string, DeviceSession>();
    for (let from = 0; from < clientIds.length; from += SESSION_LOOKUP_SIZE) {
      const ids = [...new Set(clientIds.slice(from, from + SESSION_LOOKUP_SIZE))];
      const page = await deps.emqx.listClients({ clientid: ids, limit: ids.length });
      for (const client of page.data) {
        if (client.subscriptions_cnt === 0) continue;
        found.set(client.clientid, client.connected === false ? 'offline' : 'connected');
      }
    }
    return found;
  }

  /**
   * Publishes, and tells for each message EMQX accepted whether the target device itself had it
   * (confirmAtDevice), from its session read before and after the publish. A failed read before
   * fails the attempt (nothing was published); a failed read after keeps EMQX's answers unconfirmed
   * rather than publish them again.
   */
  async function publishConfirmed(transport: Transport, clientIds: string[], messages: RenderedMessage[], confirm: boolean): Promise<AttemptOutcome[]> {
    const publish = (): Promise<AttemptOutcome[]> => (transport === 'mqtt' ? publishMqtt(messages) : publishRest(messages.map(toRestMessage)));
    if (!confirm) return publish();
    const before = await sessionsOf(clientIds).catch((err: unknown) => {
      throw asActivityFailure(err);
    });
    const outcomes = await publish();
    const accepted = clientIds.filter((_, k) => outcomes[k]?.kind === 'delivered');
    if (accepted.length === 0) return outcomes;
    let after: Map<string, DeviceSession>;
    try {
      after = await sessionsOf(accepted);
    } catch (err) {
      log.warn('could not read the sessions of devices after publishing; their deliveries are not confirmed', { error: String(err) });
      return outcomes;
    }
    return outcomes.map((outcome, k) => confirmAtDevice(outcome, before.get(clientIds[k] as string), after.get(clientIds[k] as string)));
  }

  /** Renders and publishes; a target that cannot be rendered fails alone. */
  async function publishTargets(transport: Transport, template: MessageTemplate, targets: CampaignTarget[], policy: TargetPolicy): Promise<AttemptOutcome[]> {
    const outcomes: (AttemptOutcome | undefined)[] = targets.map(() => undefined);
    const rendered: { position: number; message: RenderedMessage }[] = [];
    targets.forEach((target, position) => {
      try {
        rendered.push({ position, message: renderMessage(template, target) });
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        outcomes[position] = { kind: 'rejected', error: `cannot render the message: ${err.message}` };
      }
    });
    if (rendered.length > 0) {
      const published = await publishConfirmed(
        transport,
        rendered.map((r) => (targets[r.position] as CampaignTarget).clientId),
        rendered.map((r) => r.message),
        policy.offline.confirmAtDevice,
      );
      rendered.forEach((r, k) => (outcomes[r.position] = published[k]));
    }
    return outcomes.map((o) => o ?? { kind: 'transient', error: 'no outcome' });
  }

  /**
   * The targets just recorded as waiting whose device is connected and subscribed by now: they are
   * tried once more at once (retryNow). A device's wake-up reads the waiting records
   * after its subscriptions are live (reapplySubscriptionsAndFindCampaigns), and this reads its
   * session after writing them, so whichever of the two comes second sees the other: a device that
   * came back between the publish and the waiting record is not left to the periodic recheck.
   */
  async function backAlready(entries: readonly WaitingEntry[]): Promise<WaitingEntry[]> {
    if (entries.length === 0) return [];
    try {
      const sessions = await sessionsOf(entries.map((e) => e.clientId));
      return entries.filter((e) => sessions.get(e.clientId) === 'connected');
    } catch (err) {
      // Only the shortcut is lost: the device's next wake-up or the recheck still reaches it.
      log.warn('could not read the sessions of devices that began waiting', { error: String(err) });
      return [];
    }
  }

  function reportOf(chunk: number, ledger: ChunkLedger, published: number, delivered: number): ChunkReport {
    return { chunk, counts: ledger.counts(), nextDueAt: ledger.nextDueAt(), published, delivered, ...ledger.totalEffort() };
  }

  function finalRecords(campaignId: string, targets: CampaignTarget[], finals: Map<number, TargetState>) {
    return [...finals].map(([i, state]) => finalRecord(campaignId, (targets[i] as CampaignTarget).clientId, state));
  }

  return {
    /**
     * Resolves the targets (selector campaigns: from active device records), marks the campaign
     * running and returns how many targets it has. Idempotent.
     */
    async prepareCampaignTargets(input: { campaignId: string; selector?: TargetSelector; rollout: Pick<Rollout, 'batchSize' | 'concurrency'> }): Promise<TargetChunking> {
      const campaign = await storeOf().getCampaign(input.campaignId);
      if (!campaign) throw ApplicationFailure.nonRetryable(`campaign ${input.campaignId} does not exist`, 'CampaignNotFound');
      const running = { state: 'running' as const, active: true, startedAt: new Date().toISOString() };
      const known = campaign.targets;
      const stored = chunkingOf(known);
      if (stored) {
        await storeOf().updateCampaign(input.campaignId, running);
        return { total: known.total ?? 0, ...stored };
      }
      if (!input.selector) throw ApplicationFailure.nonRetryable(`campaign ${input.campaignId} has no targets`, 'CampaignHasNoTargets');
      const devices = await deps.history.devices.find(selectorFilter(input.selector), { projection: { _id: 1 } }).sort({ _id: 1 }).toArray();
      heartbeat();
      // A previous attempt may have written some chunks of a different selection: start clean.
      await storeOf().deleteChunks(input.campaignId);
      const chunking = await storeOf().writeChunks(input.campaignId, devices.map((d) => ({ clientId: d._id })), chunkSizeFor(devices.length, input.rollout));
      // A continuous campaign's first targets are members: a device that joins later is added once.
      if (campaign.continuous) await storeOf().recordMembers(input.campaignId, devices.map((d) => d._id), chunking.chunkSize);
      await storeOf().updateCampaign(input.campaignId, { ...running, targets: { ...known, total: devices.length, ...chunking } });
      return { total: devices.length, ...chunking };
    },

    async publishCampaignBatch(input: PublishBatchInput): Promise<ChunkReport> {
      const { campaignId, chunk, policy } = input;
      const loading = Promise.all([templateOf(campaignId), targetsOf(campaignId, chunk, input.size), storeOf().readChunkState(campaignId, chunk)]);
      if (input.startAttempt !== undefined) {
        // Checked first: a take-over also replaces the chunks this would read.
        loading.catch(() => undefined);
        const owner = (await storeOf().getCampaign(campaignId))?.startAttempt;
        if (owner !== input.startAttempt) {
          throw ApplicationFailure.nonRetryable(`campaign ${campaignId} was taken over by another start with its id; this run publishes nothing more`, 'CampaignTakenOver');
        }
      }
      const [template, targets, stored] = await loading;
      const ledger = new ChunkLedger(targets.length, stored.ledger);
      let published = 0;
      let delivered = 0;
      /** Applies a request's outcomes and writes them (which also clears the request's sending mark). */
      const settle = async (group: number[], outcomes: AttemptOutcome[]): Promise<void> => {
        const after = Date.now();
        const finals = new Map<number, TargetState>();
        const newlyWaiting: WaitingEntry[] = [];
        const reached: string[] = [];
        group.forEach((i, k) => {
          const before = ledger.stateAt(i);
          const state = applyOutcome(before, outcomes[k] as AttemptOutcome, policy, after);
          ledger.set(i, state);
          if (state.status === 'delivered') {
            delivered += 1;
            reached.push((targets[i] as CampaignTarget).clientId);
          }
          if (isFinal(state.status)) finals.set(i, state);
          else if (state.lastFailure === 'no_subscriber' && before.noSubscriberCount === undefined) {
            newlyWaiting.push({ campaignId, clientId: (targets[i] as CampaignTarget).clientId, chunk, index: i });
          }
        });
        published += group.length;
        // The executions first: once a target counts as delivered, its execution exists (the
        // workflow compares the two counts to tell that every answer is in).
        if (input.expectReply && reached.length > 0) await executionsOf().queue(campaignId, reached, after, chunk);
        // Final records and reconnect lookups before the chunk state: once the state says a target
        // is done (or waiting), its record (or lookup entry) exists. Both inserts are idempotent.
        await storeOf().recordFinalTargets(finalRecords(campaignId, targets, finals));
        await storeOf().recordWaiting(newlyWaiting);
        for (const entry of await backAlready(newlyWaiting)) ledger.set(entry.index, retryNow(ledger.stateAt(entry.index), after));
        await storeOf().writeChunkState(campaignId, chunk, { ledger: ledger.toData(), lastBatch: { id: input.batchId, published, delivered } });
      };

      // An earlier attempt of this activity died with a request in flight. If EMQX's answer was
      // recorded, it is applied now. Otherwise EMQX may have published its messages, so they are an
      // unknown outcome (retry.unknownOutcome: give up, the default, or send again), never a silent
      // second send.
      const sending = stored.sending?.batch === input.batchId ? stored.sending : undefined;
      const cutAt = (sending?.positions ?? []).flatMap((position, k) => (position < targets.length && ledger.isOpen(position) ? [{ position, k }] : []));
      const cut = cutAt.map((c) => c.position);
      const lost: AttemptOutcome = { kind: 'unknown', error: 'the worker stopped while the request was on its way to EMQX' };
      const settleCut = (): Promise<void> => settle(cut, cutAt.map(({ k }) => sending?.answered?.[k] ?? lost));
      if (stored.lastBatch?.id === input.batchId) {
        // An earlier attempt of this activity applied part or all of this batch: report it again
        // and publish nothing more (what it did not reach is due for the next batch).
        published = stored.lastBatch.published;
        delivered = stored.lastBatch.delivered;
        if (cut.length > 0) await settleCut();
        return reportOf(chunk, ledger, published, delivered);
      }
      if (cut.length > 0) await settleCut();

      const now = Date.now();
      for (const position of input.wake ?? []) {
        if (position >= 0 && position < targets.length && ledger.isOpen(position)) ledger.set(position, wake(ledger.stateAt(position), policy, now));
      }
      const due: number[] = [];
      for (let i = 0; i < targets.length && due.length < input.limit; i++) if (isDue(ledger.stateAt(i), now)) due.push(i);

      const requestSize = Math.max(1, input.requestSize ?? input.limit);
      // One request at a time: marked as sending, sent, then its outcomes written, so a crash
      // leaves at most one request whose outcome is unknown, and the retried activity knows which.
      for (let from = 0; from < due.length || from === 0; from += requestSize) {
        const group = due.slice(from, from + requestSize);
        let outcomes: AttemptOutcome[] = [];
        if (group.length > 0) {
          await storeOf().markSending(campaignId, chunk, { batch: input.batchId, positions: group });
          try {
            outcomes = await publishTargets(input.transport, template, group.map((i) => targets[i] as CampaignTarget), policy);
          } catch (err) {
            // An ApplicationFailure here is an answer that the request was not applied (EMQX
            // refused it, or there is no publisher): no doubt is left, so the mark goes and the
            // targets stay due. Anything else leaves the mark: the outcome is unknown.
            if (err instanceof ApplicationFailure) await storeOf().markSending(campaignId, chunk, null);
            throw err;
          }
        }
        heartbeat();
        if (group.length > 0) await storeOf().markAnswered(campaignId, chunk, outcomes);
        await settle(group, outcomes);
      }
      return reportOf(chunk, ledger, published, delivered);
    },

    /**
     * Adds to a continuous campaign's chunk `chunk` (holding `size` targets, 0 for a new chunk)
     * the devices signalled as joining (`clientIds`) or, for a rescan, those whose record changed
     * since `since`, that match its selector and are not targets yet, up to a full chunk (`more`
     * says there were more). Returns the chunk's size now (0: no chunk). A retried attempt adds to
     * what an earlier one wrote.
     */
    async joinCampaignTargets(input: {
      campaignId: string;
      chunk: number;
      size: number;
      total: number;
      clientIds?: string[];
      since?: number;
    }): Promise<{ size: number; more: boolean }> {
      const campaign = await storeOf().getCampaign(input.campaignId);
      const selector = campaign?.targets.selector;
      if (!campaign?.active || !selector) return { size: input.size, more: false };
      const filter = selectorFilter(selector);
      if (input.clientIds) filter.$and = [{ _id: { $in: input.clientIds } }];
      else filter.updatedAt = { $gte: new Date(input.since ?? 0).toISOString() };
      const matching = (await deps.history.devices.find(filter, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()).map((d) => d._id);
      heartbeat();
      const members = await storeOf().membersAmong(input.campaignId, matching);
      // Members of this chunk are an earlier attempt's: they stay candidates, so the chunk gets them.
      const candidates = matching.filter((id) => (members.get(id) ?? input.chunk) === input.chunk);
      const room = Math.max(0, JOIN_BATCH - input.size);
      const joined = await storeOf().joinMembers(input.campaignId, candidates.slice(0, room), input.chunk);
      const size = await storeOf().writeJoinedChunk(input.campaignId, input.chunk, joined);
      if (size > input.size) {
        await storeOf().updateCampaign(input.campaignId, { targets: { ...campaign.targets, total: input.total + size - input.size, chunkCount: input.chunk + 1 } });
      }
      return { size, more: candidates.length > room };
    },

    /** Where the targets of reconnected devices are (devices that never waited are left out). */
    async locateWaitingTargets(input: { campaignId: string; clientIds: string[] }): Promise<WaitingEntry[]> {
      const found = await mapPooled(input.clientIds, 8, (clientId) => storeOf().waitingEntry(input.campaignId, clientId));
      return found.filter((e): e is WaitingEntry => e !== null);
    },

    /** Ends every open target of the given chunks: at the deadline (offline / timed_out) or on cancel and abort (cancelled). */
    async finishCampaignChunks(input: { campaignId: string; chunks: number[]; ending: CampaignEnding; reason: string }): Promise<ChunkReport[]> {
      const reports: ChunkReport[] = [];
      for (const chunk of input.chunks) {
        // Read afresh: a continuous campaign's chunk may have grown since a batch cached it.
        const [targets, stored] = await Promise.all([storeOf().readChunkTargets(input.campaignId, chunk), storeOf().readChunkState(input.campaignId, chunk)]);
        const ledger = new ChunkLedger(targets.length, stored.ledger);
        const now = Date.now();
        const finals = new Map<number, TargetState>();
        for (const i of ledger.openPositions()) {
          const before = ledger.stateAt(i);
          const state = input.ending === 'expire' ? expire(before, now) : cancel(before, input.reason, now);
          ledger.set(i, state);
          finals.set(i, state);
        }
        if (finals.size > 0) {
          await storeOf().recordFinalTargets(finalRecords(input.campaignId, targets, finals));
          await storeOf().writeChunkState(input.campaignId, chunk, { ...stored, ledger: ledger.toData() });
        }
        reports.push(reportOf(chunk, ledger, 0, 0));
        heartbeat({ chunk });
      }
      return reports;
    },

    /**
     * A campaign with replies: times out the executions delivered more than `timeoutMs` ago
     * without a final answer, then counts the executions by state (docs/jobs.md).
     */
    async pollCampaignReplies(input: PollRepliesInput): Promise<ReplyTally> {
      await endExecutions(input.campaignId, 'TIMED_OUT', input.timeoutMs);
      if (!input.retry || !input.transport || !input.policy) return countsOnceSettled(input.campaignId, input.settleWithinMs ?? 0);
      while ((await executionsOf().scheduleRetries(input.campaignId, input.retry, RETRY_BATCH, Date.now())) === RETRY_BATCH) heartbeat();
      await publishRetries(input.campaignId, input.transport, input.policy);
      // Counted after the retries were scheduled; a FAILED or TIMED_OUT reported since, with a
      // retry left, is not final yet: it counts as queued (its retry is scheduled at the next poll).
      const [after, retryable, retries] = await Promise.all([executionsOf().counts(input.campaignId), executionsOf().countRetryable(input.campaignId, input.retry), executionsOf().retryCount(input.campaignId)]);
      return {
        ...after,
        QUEUED: after.QUEUED + retryable.failed + retryable.timedOut,
        FAILED: after.FAILED - retryable.failed,
        TIMED_OUT: after.TIMED_OUT - retryable.timedOut,
        retries,
      };
    },

    /** Ends a finished campaign's open executions: TIMED_OUT at the deadline, CANCELED on cancel and abort. */
    async endCampaignReplies(input: { campaignId: string; status: 'TIMED_OUT' | 'CANCELED'; withRetries?: boolean }): Promise<ReplyTally> {
      await endExecutions(input.campaignId, input.status);
      const counts = await executionsOf().counts(input.campaignId);
      return input.withRetries ? { ...counts, retries: await executionsOf().retryCount(input.campaignId) } : counts;
    },

    /**
     * Stores the rollback campaign of an aborted campaign (docs/jobs.md, "Rollback on abort"):
     * record `<id>-rollback` (linked both ways) with the stored rollback message, its targets the
     * executions that SUCCEEDED or were IN_PROGRESS. Returns how they are stored and the start
     * attempt, for the workflow to start it; null when there is no target. Idempotent: the
     * executions are final by now, so a retried run writes the same record and chunks.
     */
    async prepareRollbackCampaign(input: { campaignId: string; rollout: Pick<Rollout, 'batchSize' | 'concurrency'> }): Promise<{ targets: TargetChunking; startAttempt: string } | null> {
      const rollbackId = rollbackCampaignId(input.campaignId);
      const [parent, message, existing] = await Promise.all([storeOf().getCampaign(input.campaignId), storeOf().rollbackMessageOf(input.campaignId), storeOf().getCampaign(rollbackId)]);
      if (!parent || !message) throw ApplicationFailure.nonRetryable(`campaign ${input.campaignId} has no rollback message`, 'RollbackMissing');
      if (existing && existing.rollbackOf !== input.campaignId) {
        throw ApplicationFailure.nonRetryable(`campaign ${rollbackId} exists and is not the rollback of ${input.campaignId}`, 'RollbackIdTaken');
      }
      const clientIds = await executionsOf().rollbackTargets(input.campaignId);
      if (clientIds.length === 0) return null;
      const chunkSize = chunkSizeFor(clientIds.length, input.rollout);
      const targets: TargetChunking = { total: clientIds.length, chunkCount: Math.ceil(clientIds.length / chunkSize), chunkSize };
      const startAttempt = `rollback-of-${parent.startAttempt}`;
      const now = new Date().toISOString();
      const record: CampaignRecord = {
        campaignId: rollbackId,
        workflowId: campaignWorkflowId(rollbackId),
        // The workflow starts right after this: nothing else marks a child-started campaign running.
        state: 'running',
        active: true,
        transport: parent.transport,
        waitOffline: parent.waitOffline,
        expectReply: true,
        createdAt: now,
        startedAt: now,
        startAttempt,
        targets: { source: 'list', ...targets },
        rollbackOf: input.campaignId,
      };
      await storeOf().createCampaign(record, message);
      await storeOf().writeChunks(rollbackId, clientIds.map((clientId) => ({ clientId })), chunkSize);
      await storeOf().updateCampaign(input.campaignId, { rollback: rollbackId });
      return { targets, startAttempt };
    },

    /** Records the campaign's state in MongoDB; a final state also clears its reconnect lookups and chunk states. */
    async recordCampaignState(input: { campaignId: string; state: CampaignState; counts?: TargetCounts; reason?: string }): Promise<void> {
      const final = isFinalCampaignState(input.state);
      const now = new Date().toISOString();
      const recorded = storeOf().updateCampaign(input.campaignId, {
        state: input.state,
        active: !final,
        ...(input.state === 'running' ? { startedAt: now } : {}),
        ...(final ? { finishedAt: now } : {}),
        ...(input.counts ? { counts: input.counts } : {}),
        ...(input.reason ? { reason: input.reason } : {}),
      });
      // Every target has its final record by now; a retried run repeats all three harmlessly.
      await Promise.all([recorded, ...(final ? [storeOf().clearWaiting(input.campaignId), storeOf().deleteChunkStates(input.campaignId)] : [])]);
    },

    /**
     * Tells every running campaign that waits for this device that it is back online, for
     * platforms with their own presence source (device workflows signal campaigns themselves);
     * cheap when the device is not awaited.
     */
    async wakeCampaignsForDevice(input: { clientId: string }): Promise<{ campaigns: string[] }> {
      return { campaigns: await wakeCampaignsWaitingFor(storeOf(), getClient(), input.clientId) };
    },
  };
}
