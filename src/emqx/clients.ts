/**
 * Live clients: list, look up, kick, and subscribe on a client's behalf
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl).
 * Subscribe calls act on the client's channel: when there is none, EMQX answers 404
 * `CLIENTID_NOT_FOUND`, surfaced as `EmqxNotFoundError` so callers can tell "offline" apart and
 * re-apply on reconnect. EMQX does not check authorization for these subscriptions (the channel
 * takes `{subscribe, ...}` straight to `post_process_subscribe`, emqx_channel.erl), so whatever is
 * asked is granted: callers check topics against the device's ACL themselves.
 */
import { z } from 'zod';
import { falseIfNotFound, nullIfNotFound } from './errors';
import { apiPath, type CallOptions, type EmqxHttp } from './http';
import { ClientListQuery, NonEmpty, SubscribeOptions } from './inputs';
import { fetchPage, paginate, type PaginateOptions } from './pagination';
import { parseInput, parseMaybeWrapped } from './parse';
import { ClientInfo, SubscribeBulkBody, Subscription, type Page, type SubscribeBulkFailure } from './schemas';

export type ClientFilter = Omit<ClientListQuery, 'page' | 'limit'>;

export interface SubscribeFailure {
  topic: string;
  /** EMQX's reason as Erlang prints it, e.g. `channel_not_found`, `invalid_subopts_nl`. */
  reason: string;
  /** The client's channel was gone when EMQX got to this topic: it disconnected during the call. */
  clientGone: boolean;
}

export interface SubscribeBulkResult {
  succeeded: Subscription[];
  failed: SubscribeFailure[];
  /** Some topic failed because the client disconnected during the call (see `SubscribeFailure.clientGone`). */
  clientGone: boolean;
}

/**
 * The reason `emqx_mgmt:subscribe/2` gives when no node holds the client's channel any more: the
 * client left between EMQX's lookup of it and this topic (emqx_mgmt.erl `subscribe/3`).
 */
const CLIENT_GONE_REASONS: ReadonlySet<string> = new Set(['channel_not_found']);

const clientPath = (clientid: string) => apiPath`/clients/${parseInput(NonEmpty, clientid, 'clientid')}`;

export async function listClients(http: EmqxHttp, query: ClientListQuery = {}, opts: CallOptions = {}): Promise<Page<ClientInfo>> {
  return fetchPage(http, '/clients', parseInput(ClientListQuery, query, 'query'), ClientInfo, opts);
}

export function iterateClients(http: EmqxHttp, filter: ClientFilter = {}, opts: PaginateOptions = {}): AsyncGenerator<ClientInfo, void, undefined> {
  return paginate(http, '/clients', parseInput(ClientListQuery, filter, 'filter'), ClientInfo, opts);
}

/** The client (connected, or disconnected with a live session), or `null` when EMQX has neither. */
export async function getClient(http: EmqxHttp, clientid: string, opts: CallOptions = {}): Promise<ClientInfo | null> {
  const path = clientPath(clientid);
  return nullIfNotFound(
    http.request({ method: 'GET', path, signal: opts.signal }).then((res) => parseMaybeWrapped(ClientInfo, res, { method: 'GET', path })),
  );
}

/** Disconnects the client and ends its session; `false` when it was not there (404). */
export async function kickClient(http: EmqxHttp, clientid: string, opts: CallOptions = {}): Promise<boolean> {
  return falseIfNotFound(http.request({ method: 'DELETE', path: clientPath(clientid), signal: opts.signal }));
}

/** Kicks several clients in one call; unknown ids are ignored by EMQX. */
export async function kickClients(http: EmqxHttp, clientids: readonly string[], opts: CallOptions = {}): Promise<void> {
  const body = parseInput(z.array(NonEmpty), clientids, 'clientids');
  if (body.length === 0) return;
  await http.request({ method: 'POST', path: '/clients/kickout/bulk', body, signal: opts.signal });
}

/** The client's subscriptions, or `null` when the client is not found. */
export async function getClientSubscriptions(http: EmqxHttp, clientid: string, opts: CallOptions = {}): Promise<Subscription[] | null> {
  const path = `${clientPath(clientid)}/subscriptions`;
  return nullIfNotFound(
    http
      .request({ method: 'GET', path, signal: opts.signal })
      .then((res) => parseMaybeWrapped(z.array(Subscription), res, { method: 'GET', path })),
  );
}

/** Subscribes the client's session to a topic. Throws `EmqxNotFoundError` (`CLIENTID_NOT_FOUND`) when offline. */
export async function subscribe(http: EmqxHttp, clientid: string, subscription: SubscribeOptions, opts: CallOptions = {}): Promise<Subscription> {
  const path = `${clientPath(clientid)}/subscribe`;
  const body = parseInput(SubscribeOptions, subscription, 'subscription');
  const res = await http.request({ method: 'POST', path, body, signal: opts.signal });
  if (res.body === undefined) return { topic: body.topic, qos: body.qos ?? 0, clientid };
  return parseMaybeWrapped(Subscription, res, { method: 'POST', path });
}

function reasonText(reason: unknown): string {
  return typeof reason === 'string' ? reason : JSON.stringify(reason);
}

function failureOf({ data, reason }: SubscribeBulkFailure): SubscribeFailure {
  const text = reasonText(reason);
  return { topic: data[1], reason: text, clientGone: CLIENT_GONE_REASONS.has(text) };
}

/**
 * Subscribes to several topics at once. EMQX answers a plain list when every topic succeeded and
 * `{succeed, failed}` otherwise (emqx_mgmt_util:batch_operation/3); both become
 * `{succeeded, failed, clientGone}`. A client gone before the call throws `EmqxNotFoundError`; one
 * gone during it is `clientGone`, a normal outcome: its topics are re-applied on its next connect.
 */
export async function subscribeBulk(
  http: EmqxHttp,
  clientid: string,
  subscriptions: readonly SubscribeOptions[],
  opts: CallOptions = {},
): Promise<SubscribeBulkResult> {
  const path = `${clientPath(clientid)}/subscribe/bulk`;
  const body = parseInput(z.array(SubscribeOptions), subscriptions, 'subscriptions');
  if (body.length === 0) return { succeeded: [], failed: [], clientGone: false };
  const res = await http.request({ method: 'POST', path, body, signal: opts.signal });
  const parsed = parseMaybeWrapped(SubscribeBulkBody, res, { method: 'POST', path });
  if (Array.isArray(parsed)) return { succeeded: parsed, failed: [], clientGone: false };
  const failed = parsed.failed.map(failureOf);
  return { succeeded: parsed.succeed, failed, clientGone: failed.some((f) => f.clientGone) };
}

/** Throws `EmqxNotFoundError` (`CLIENTID_NOT_FOUND`) when the client is offline. */
export async function unsubscribe(http: EmqxHttp, clientid: string, topic: string, opts: CallOptions = {}): Promise<void> {
  const path = `${clientPath(clientid)}/unsubscribe`;
  const body = { topic: parseInput(NonEmpty, topic, 'topic') };
  await http.request({ method: 'POST', path, body, signal: opts.signal });
}

/** Throws `EmqxNotFoundError` (`CLIENTID_NOT_FOUND`) when the client is offline. */
export async function unsubscribeBulk(http: EmqxHttp, clientid: string, topics: readonly string[], opts: CallOptions = {}): Promise<void> {
  const path = `${clientPath(clientid)}/unsubscribe/bulk`;
  const body = parseInput(z.array(NonEmpty), topics, 'topics').map((topic) => ({ topic }));
  if (body.length === 0) return;
  await http.request({ method: 'POST', path, body, signal: opts.signal });
}
