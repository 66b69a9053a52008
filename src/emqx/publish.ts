/**
 * Publishing through the REST API
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl). A publish
 * has an outcome per message rather than a plain success: 200 = reached at least one subscriber, 202 =
 * accepted but nobody subscribed (reason code 16; retained messages are still stored), 503 = subscribers
 * matched but dispatch failed. A 400 rejects the whole request (for bulk: every message) and is thrown.
 */
import { z } from 'zod';
import { errorFromResponse, EmqxResponseError } from './errors';
import type { CallOptions, EmqxHttp, EmqxRequest, EmqxResponse } from './http';
import { PublishMessage } from './inputs';
import { parseInput, parseMaybeWrapped, parseResponse } from './parse';
import { PublishAccepted, PublishReason } from './schemas';

export type PublishOutcome =
  | { status: 'delivered'; id: string }
  | { status: 'no_subscriber' }
  | { status: 'failed'; reasonCode: number; message: string };

/** MQTT reason code 16, "No matching subscribers". */
const NO_MATCHING_SUBSCRIBERS = 16;

type ParsedMessage = z.output<typeof PublishMessage>;

/** Bytes go out base64-encoded; EMQX decodes them before publishing. */
function toWire(message: ParsedMessage) {
  if (typeof message.payload === 'string') return message;
  return { ...message, payload: Buffer.from(message.payload).toString('base64'), payload_encoding: 'base64' as const };
}

/** One message's result body: `{id}`, or `{reason_code, message}`. */
const Outcome = z.union([
  PublishAccepted.transform(({ id }): PublishOutcome => ({ status: 'delivered', id })),
  PublishReason.transform(({ reason_code, message }): PublishOutcome =>
    reason_code === NO_MATCHING_SUBSCRIBERS ? { status: 'no_subscriber' } : { status: 'failed', reasonCode: reason_code, message },
  ),
]);

function fail(http: EmqxHttp, req: EmqxRequest, res: EmqxResponse): never {
  throw errorFromResponse({ ...res, method: req.method, path: req.path, secrets: http.secretsOf(req) });
}

/** Publishes one message. */
export async function publish(http: EmqxHttp, message: PublishMessage, opts: CallOptions = {}): Promise<PublishOutcome> {
  const body = toWire(parseInput(PublishMessage, message, 'message'));
  const req: EmqxRequest = { method: 'POST', path: '/publish', body, signal: opts.signal };
  const res = await http.send(req);
  if (res.status === 202) return { status: 'no_subscriber' };
  if (res.status >= 200 && res.status < 300) return parseMaybeWrapped(Outcome, res, req);
  // A dispatch failure has a /publish-style body; any other 503 means EMQX itself is unavailable.
  if (res.status === 503 && PublishReason.safeParse(res.body).success) return parseResponse(Outcome, res, req);
  return fail(http, req, res);
}

/**
 * Publishes several messages in one request; outcomes come back in request order. An empty list
 * sends nothing.
 */
export async function publishBulk(http: EmqxHttp, messages: readonly PublishMessage[], opts: CallOptions = {}): Promise<PublishOutcome[]> {
  const body = parseInput(z.array(PublishMessage), messages, 'messages').map(toWire);
  if (body.length === 0) return [];
  const req: EmqxRequest = { method: 'POST', path: '/publish/bulk', body, signal: opts.signal };
  const res = await http.send(req);
  const perMessage = (res.status >= 200 && res.status < 300) || (res.status === 503 && Array.isArray(res.body));
  if (!perMessage) return fail(http, req, res);
  const outcomes = res.status === 503 ? parseResponse(z.array(Outcome), res, req) : parseMaybeWrapped(z.array(Outcome), res, req);
  if (outcomes.length !== body.length) {
    throw new EmqxResponseError(`EMQX POST /publish/bulk answered ${outcomes.length} outcomes for ${body.length} messages`, {
      status: res.status,
      code: 'INVALID_RESPONSE',
      method: req.method,
      path: req.path,
    });
  }
  return outcomes;
}
