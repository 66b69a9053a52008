import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { commandReplySignal, commandWorkflowId } from '../contracts/command';
import { classifyReply, type DeviceReply } from '../domain/schemas/device-reply';
import type { DeviceTopics } from '../domain/device-topics';
import type { JobExecutionStore } from '../store/job-executions';
import type { DeviceReplyStore } from '../store/job-replies';
import { InvalidEventError, parseEventBody } from './emqx-events';
import { SinkUnavailableError } from './event-sink';
import type { RejectReason } from './metrics';

/**
 * `POST /emqx/replies`: device job statuses and command replies, as the rule `device-ops emqx setup`
 * creates sends them (`message.publish` events of the status and reply topics; fields in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1). Each reply is stored once, then applied: a job status to its target's
 * execution record, a command reply to the command's record and its workflow. Only then the answer
 * is 2xx; a failure answers 503 and EMQX sends the request again, which stores nothing twice and
 * applies nothing twice (docs/jobs.md).
 */

export interface ReplyResult {
  /** Replies in the request (status and reply topics). */
  replies: number;
  /** Stored now (the rest were stored by an earlier delivery). */
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
  executions: JobExecutionStore;
  temporal: Client;
  topics: DeviceTopics;
}

export class DeviceReplies implements ReplyHandler {
  constructor(private readonly deps: DeviceReplyDeps) {}

  /** Throws InvalidEventError for a malformed body, SinkUnavailableError when the reply could not be kept or applied. */
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
    try {
      const stored = await this.deps.replies.record(replies, receivedAt);
      // In request order: EMQX sends a device's messages in the order it received them.
      for (const reply of replies) await this.apply(reply);
      return { replies: replies.length, stored, refused: replies.filter((r) => !r.accepted).length, ignored };
    } catch (err) {
      throw new SinkUnavailableError(`reply not kept: ${(err as Error).message}`);
    }
  }

  private async apply(reply: DeviceReply): Promise<void> {
    if (!reply.accepted) return;
    if (reply.kind === 'job') {
      const { status, progress, details } = reply;
      await this.deps.executions.apply(reply.jobId, reply.clientId, {
        status,
        ...(progress !== undefined ? { progress } : {}),
        ...(details !== undefined ? { details } : {}),
        at: reply.at,
        messageId: reply.messageId,
      });
      return;
    }
    const message = { status: reply.status, ...(reply.result !== undefined ? { result: reply.result } : {}), messageId: reply.messageId, at: reply.at };
    await this.deps.replies.saveCommandReply({ clientId: reply.clientId, commandId: reply.commandId, ...message });
    try {
      await this.deps.temporal.workflow.getHandle(commandWorkflowId(reply.clientId, reply.commandId)).signal(commandReplySignal, message);
    } catch (err) {
      // No such command running (unknown, or already ended): the reply stays recorded.
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
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
