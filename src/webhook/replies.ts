import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { commandReplySignal, commandWorkflowId } from '../contracts/command';
import { classifyReply, type DeviceReply } from '../domain/schemas/device-reply';
import type { DeviceTopics } from '../domain/device-topics';
import type { JobStatusReport } from '../domain/job-status';
import type { JobExecutionStore } from '../store/job-executions';
import { mapPooled } from '../activities/failures';
import { DeviceReplyStore, type StoredDeviceReply } from '../store/job-replies';
import { InvalidEventError, parseEventBody } from './emqx-events';
import { SinkUnavailableError } from './event-sink';
import { GroupCommit } from './group-commit';
import type { RejectReason } from './metrics';

/**
 * `POST /emqx/replies`: device job statuses and command replies, as the rule `device-ops emqx setup`
 * creates sends them (`message.publish` events of the status and reply topics; fields in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1). Each reply is stored once (by EMQX message id), then the answer is 2xx; a
 * failure to store answers 503 and EMQX sends the request again, which stores nothing twice. The
 * replies are applied afterwards by the applier (src/webhook/reply-applier.ts): a job status to its
 * target's execution record, a command reply to the command's record and its workflow
 * (docs/jobs.md). Concurrent requests are stored together (group commit, src/webhook/group-commit.ts).
 */

export interface ReplyResult {
  /** Replies in the request (status and reply topics). */
  replies: number;
  /** Stored now, to be applied in the background (the rest were stored by an earlier delivery). */
  stored: number;
  /** Refused (bad payload, or published by another client than the topic names), recorded with the reason. */
  refused: number;
  /** Messages of other topics or other events. */
  ignored: number;
}

export interface ReplyHandler {
  accept(body: unknown, receivedAt: Date): Promise<ReplyResult>;
}

export interface DeviceReplyDeps {
  replies: DeviceReplyStore;
  topics: DeviceTopics;
  /** Takes the replies put in the backlog now, to apply them (ReplyApplier.enqueue). */
  applyLater(replies: readonly StoredDeviceReply[]): void;
  /** A request whose replies are not stored within this gets 503 (default 5 s). */
  storeTimeoutMs?: number;
}

/** The writes of concurrent requests stored together, as the event inbox does (src/webhook/event-sink.ts). */
const MAX_REPLIES_PER_WRITE = 1_000;
const MAX_CONCURRENT_WRITES = 2;
const COMMAND_SIGNAL_DEADLINE_MS = 10_000;

export class DeviceReplies implements ReplyHandler {
  private readonly commit: GroupCommit<StoredDeviceReply, { fresh: Set<StoredDeviceReply>; queued: Set<StoredDeviceReply> }>;

  constructor(private readonly deps: DeviceReplyDeps) {
    this.commit = new GroupCommit(
      async (docs) => {
        // The backlog first: a crash between the two writes leaves a reply to apply, not one
        // stored that nothing applies (EMQX's retry would find it stored and not queue it).
        const accepted = docs.filter((doc) => doc.accepted);
        const queued = await deps.replies.addToBacklog(accepted);
        const fresh = await deps.replies.insert(docs);
        return { fresh: new Set(fresh.map((i) => docs[i] as StoredDeviceReply)), queued: new Set(queued.map((i) => accepted[i] as StoredDeviceReply)) };
      },
      { maxItems: MAX_REPLIES_PER_WRITE, maxConcurrent: MAX_CONCURRENT_WRITES, deadlineMs: deps.storeTimeoutMs ?? 5_000 },
    );
  }

  /** Throws InvalidEventError for a malformed body, SinkUnavailableError when the replies could not be stored. */
  async accept(body: unknown, receivedAt: Date): Promise<ReplyResult> {
    const parsed = parseEventBody(body, receivedAt);
    const replies: DeviceReply[] = [];
    let ignored = parsed.ignored + parsed.connections.length;
    for (const event of parsed.deviceEvents) {
      const reply =
        event.event === 'message.publish' && event.messageId !== undefined
          ? classifyReply({ messageId: event.messageId, publisher: event.clientId, topic: event.topic, payload: event.payload ?? '', at: Date.parse(event.at) }, this.deps.topics)
          : null;
      if (reply) replies.push(reply);
      else ignored++;
    }
    const docs = replies.map((reply) => DeviceReplyStore.document(reply, receivedAt));
    let written: { fresh: Set<StoredDeviceReply>; queued: Set<StoredDeviceReply> } = { fresh: new Set(), queued: new Set() };
    try {
      if (docs.length > 0) written = await this.commit.submit(docs);
    } catch (err) {
      throw new SinkUnavailableError(`reply not kept: ${(err as Error).message}`);
    }
    this.deps.applyLater(docs.filter((doc) => written.queued.has(doc)));
    return { replies: replies.length, stored: docs.filter((doc) => written.fresh.has(doc)).length, refused: replies.filter((r) => !r.accepted).length, ignored };
  }
}

export interface ReplyApplyDeps {
  replies: DeviceReplyStore;
  executions: JobExecutionStore;
  temporal: Client;
}

/** What a batch of replies came to: the keys of those not applied (they stay pending), and why. */
export interface BatchApplyResult {
  failed: Set<string>;
  error?: unknown;
}

/** Command replies are applied this many devices at once (each device's one after another). */
const COMMAND_DEVICES_AT_ONCE = 8;

type AcceptedReply<K extends DeviceReply['kind']> = StoredDeviceReply & { kind: K; accepted: true };

/**
 * Applies a batch of accepted replies (ReplyApplier): the job statuses to their targets' executions
 * in one JobExecutionStore.applyMany, each command reply to the command's record and its workflow.
 */
export function replyApplyBatch(deps: ReplyApplyDeps): (replies: readonly StoredDeviceReply[]) => Promise<BatchApplyResult> {
  return async (replies) => {
    const result: BatchApplyResult = { failed: new Set() };
    const failedAll = (list: readonly StoredDeviceReply[], err: unknown): void => {
      for (const reply of list) result.failed.add(reply.key);
      result.error ??= err;
    };
    const jobs = replies.filter((r): r is AcceptedReply<'job'> => r.accepted && r.kind === 'job');
    const commands = new Map<string, AcceptedReply<'command'>[]>();
    for (const r of replies) {
      if (!r.accepted || r.kind !== 'command') continue;
      const list = commands.get(r.clientId);
      if (list) list.push(r);
      else commands.set(r.clientId, [r]);
    }
    const applyingJobs = deps.executions
      .applyMany(jobs.map((r) => ({ jobId: r.jobId, clientId: r.clientId, report: jobReport(r) })))
      .catch((err: unknown) => failedAll(jobs, err));
    await mapPooled([...commands.values()], COMMAND_DEVICES_AT_ONCE, async (list) => {
      for (const reply of list) await applyCommandReply(deps, reply).catch((err: unknown) => failedAll([reply], err));
    });
    await applyingJobs;
    return result;
  };
}

function jobReport(reply: AcceptedReply<'job'>): JobStatusReport {
  const { status, progress, details } = reply;
  return { status, ...(progress !== undefined ? { progress } : {}), ...(details !== undefined ? { details } : {}), at: reply.at, messageId: reply.messageId };
}

/** A command reply to the command's record and its workflow; throws when it could not (the reply stays pending). */
async function applyCommandReply(deps: ReplyApplyDeps, reply: AcceptedReply<'command'>): Promise<void> {
  const message = { status: reply.status, ...(reply.result !== undefined ? { result: reply.result } : {}), messageId: reply.messageId, at: reply.at };
  await deps.replies.saveCommandReply({ clientId: reply.clientId, commandId: reply.commandId, ...message });
  try {
    // A deadline: a hung Temporal call must not hold the applier's batch.
    await deps.temporal.withDeadline(Date.now() + COMMAND_SIGNAL_DEADLINE_MS, () =>
      deps.temporal.workflow.getHandle(commandWorkflowId(reply.clientId, reply.commandId)).signal(commandReplySignal, message),
    );
  } catch (err) {
    // No such command running (unknown, or already ended): the reply stays recorded.
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
}

/** Registers the route on the adapter's server, behind the same token check as `/emqx/events`. */
export function registerReplyRoute(
  app: FastifyInstance,
  deps: {
    handler: ReplyHandler;
    tokenMatches: (headers: Record<string, string | string[] | undefined>) => boolean;
    reject: (reply: FastifyReply, status: number, reason: RejectReason, message: string) => FastifyReply;
  },
): void {
  app.post(
    '/emqx/replies',
    {
      onRequest: async (request, reply) => {
        if (!deps.tokenMatches(request.headers)) return deps.reject(reply.header('connection', 'close'), 401, 'unauthorized', 'missing or wrong token');
      },
    },
    async (request, reply) => {
      try {
        return await deps.handler.accept(request.body, new Date());
      } catch (err) {
        if (err instanceof InvalidEventError) return deps.reject(reply, 400, 'invalid_event', err.message);
        if (!(err instanceof SinkUnavailableError)) throw err;
        request.log.warn({ reason: err.message }, 'replies not kept; answering 503 so EMQX retries');
        return deps.reject(reply, 503, 'unavailable', 'replies could not be stored; retry');
      }
    },
  );
}
