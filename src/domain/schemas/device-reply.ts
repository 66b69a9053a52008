import { z } from 'zod';
import { matchDeviceTopic, type DeviceTopics } from '../device-topics';
import { issueText } from '../input-error';
import { REPORTED_JOB_STATUSES, type ReportedJobStatus } from '../job-status';

/**
 * What a device publishes on its status and reply topics (docs/jobs.md), checked as the webhook
 * adapter receives it. A reply that fails a check is still recorded, with the reason, and moves
 * nothing.
 */

/** Larger payloads are recorded as bad: a status is a few hundred bytes; details are a summary, not a log. */
export const MAX_REPLY_PAYLOAD_BYTES = 16_384;

export const COMMAND_REPLY_STATUSES = ['SUCCEEDED', 'FAILED', 'REJECTED'] as const;
export type CommandReplyStatus = (typeof COMMAND_REPLY_STATUSES)[number];

const JobStatusPayload = z.strictObject({
  status: z.enum(REPORTED_JOB_STATUSES, { error: `must be one of ${REPORTED_JOB_STATUSES.join(', ')}` }),
  progress: z.number({ error: 'must be a number' }).min(0, 'must be 0-100').max(100, 'must be 0-100').optional(),
  details: z.record(z.string(), z.unknown(), { error: 'must be a JSON object' }).optional(),
});

const CommandReplyPayload = z.strictObject({
  status: z.enum(COMMAND_REPLY_STATUSES, { error: `must be one of ${COMMAND_REPLY_STATUSES.join(', ')}` }),
  result: z.unknown().optional(),
});

/** A message EMQX's rule engine passed on from a status or reply topic. */
export interface PublishedReply {
  /** EMQX's message id. */
  messageId: string;
  /** The client that published it (the rule's `clientid`). */
  publisher: string;
  topic: string;
  payload: string;
  /** EMQX's receive time (epoch ms). */
  at: number;
}

interface ReplyCommon {
  messageId: string;
  /** The device the topic names. */
  clientId: string;
  publisher: string;
  topic: string;
  at: number;
}

/** A refused reply keeps why, and the start of what the device sent (for the operator). */
interface Refused {
  accepted: false;
  problem: string;
  payload: string;
}

/** How much of a refused payload is kept. */
export const KEPT_REFUSED_PAYLOAD_CHARS = 1_024;

export type DeviceReply =
  | (ReplyCommon & { kind: 'job'; jobId: string } & ({ accepted: true; status: ReportedJobStatus; progress?: number; details?: string } | Refused))
  | (ReplyCommon & { kind: 'command'; commandId: string } & ({ accepted: true; status: CommandReplyStatus; result?: string } | Refused));

/** Which reply a message is, validated; null for a topic that is neither a status nor a reply topic. */
export function classifyReply(message: PublishedReply, topics: DeviceTopics): DeviceReply | null {
  const job = matchDeviceTopic(topics.jobStatus, message.topic);
  const command = job ? null : matchDeviceTopic(topics.commandReply, message.topic);
  const values = job ?? command;
  if (!values) return null;
  const common: ReplyCommon = { messageId: message.messageId, clientId: values.clientid as string, publisher: message.publisher, topic: message.topic, at: message.at };
  const problem = publisherProblem(common) ?? sizeProblem(message.payload);
  const parsed = problem ? null : parseJson(message.payload);
  const refused = (reason: string): Refused => ({ accepted: false, problem: reason, payload: message.payload.slice(0, KEPT_REFUSED_PAYLOAD_CHARS) });
  if (job) {
    const base = { ...common, kind: 'job' as const, jobId: values.jobid as string };
    if (problem) return { ...base, ...refused(problem) };
    if (!parsed?.ok) return { ...base, ...refused(parsed?.problem ?? 'payload: is not JSON') };
    const payload = JobStatusPayload.safeParse(parsed.value);
    if (!payload.success) return { ...base, ...refused(firstIssue(payload.error, parsed.value)) };
    const { status, progress, details } = payload.data;
    return { ...base, accepted: true, status, ...(progress !== undefined ? { progress } : {}), ...(details !== undefined ? { details: JSON.stringify(details) } : {}) };
  }
  const base = { ...common, kind: 'command' as const, commandId: values.commandid as string };
  if (problem) return { ...base, ...refused(problem) };
  if (!parsed?.ok) return { ...base, ...refused(parsed?.problem ?? 'payload: is not JSON') };
  const payload = CommandReplyPayload.safeParse(parsed.value);
  if (!payload.success) return { ...base, ...refused(firstIssue(payload.error, parsed.value)) };
  return { ...base, accepted: true, status: payload.data.status, ...(payload.data.result !== undefined ? { result: JSON.stringify(payload.data.result) } : {}) };
}

/** A device answers only for itself: another client publishing on its topic is refused (and recorded). */
function publisherProblem(reply: ReplyCommon): string | null {
  return reply.publisher === reply.clientId ? null : `published by client "${reply.publisher}", not by the device the topic names ("${reply.clientId}")`;
}

function sizeProblem(payload: string): string | null {
  const bytes = Buffer.byteLength(payload, 'utf8');
  return bytes > MAX_REPLY_PAYLOAD_BYTES ? `payload: must be at most ${MAX_REPLY_PAYLOAD_BYTES} bytes (it is ${bytes})` : null;
}

function parseJson(payload: string): { ok: true; value: unknown } | { ok: false; problem: string } {
  try {
    return { ok: true, value: JSON.parse(payload) as unknown };
  } catch {
    return { ok: false, problem: 'payload: is not JSON' };
  }
}

function firstIssue(error: z.ZodError, input: unknown): string {
  const issue = error.issues[0];
  if (!issue) return 'payload: is invalid';
  const path = issue.path.map(String).join('.');
  const missing = issue.path.length > 0 && valueAt(input, issue.path) === undefined;
  return `payload${path ? `.${path}` : ''}: ${missing ? 'is required' : issueText(issue, input)}`;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}
