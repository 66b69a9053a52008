import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  INVALID_SUBOPTS_NL,
  kickClient,
  proxySubscribeRefusal,
  proxyTargetOf,
  subscribeBatchOnBehalf,
  subscribeOnBehalf,
  unsubscribeOnBehalf,
  type ProxyTarget,
} from '../../client-control';
import { NODE_NAME, rfc3339, subscriptionView } from '../../emqx-formats';
import { discardOfflineSession } from '../../offline-sessions';
import type { LiveSession, OfflineSession, SessionFacts } from '../../sessions';
import { trafficOf } from '../../stats';
import { isValidTopicFilter } from '../../topic';
import type { ApiContext } from '../context';
import { apiError, badRequest, clientNotFound, parseBody, type ApiError } from '../errors';
import { booleanParam, integerParam, pageRequest, paginate, queryValue, queryValues, type Query } from '../pagination';

/**
 * Clients: list, look up, kick, and subscribe/unsubscribe on behalf
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl).
 * As in EMQX, a body that fails its schema is a 400 before the client is looked up.
 */

// EMQX checks these bodies against its hocon schema (`check_schema => true` in
// emqx_mgmt_api_clients.erl api_spec/0), which refuses fields it does not know.
const SubscribeRequest = z.strictObject({
  topic: z.string().refine(isValidTopicFilter, 'must be a valid topic filter'),
  qos: z.number().int().min(0).max(2).default(0),
  nl: z.number().int().min(0).max(1).default(0),
  rap: z.number().int().min(0).max(1).default(0),
  rh: z.number().int().min(0).max(2).default(0),
});
const UnsubscribeRequest = z.strictObject({ topic: z.string().min(1) });

type ClientParams = { Params: { clientid: string } };

/** The EMQX client object (OAS `client` schema) for a connected client. */
export function clientInfo(session: SessionFacts): Record<string, unknown> {
  return {
    clientid: session.clientid,
    username: session.username ?? null,
    node: NODE_NAME,
    connected: true,
    connected_at: rfc3339(session.connectedAt),
    created_at: rfc3339(session.createdAt),
    ip_address: session.ipAddress,
    port: session.port,
    proto_name: session.protoName,
    proto_ver: session.protoVer,
    keepalive: session.keepalive,
    clean_start: session.cleanStart,
    expiry_interval: session.expiryInterval,
    is_bridge: false,
    is_expired: false,
    is_persistent: false,
    durable: false,
    mountpoint: null,
    listener: session.listener,
    zone: 'default',
    enable_authn: true,
    subscriptions_cnt: session.subscriptions.size,
    subscriptions_max: 'infinity',
    inflight_cnt: 0,
    inflight_max: 32,
    mqueue_len: 0,
    mqueue_max: 1000,
    mqueue_dropped: 0,
    awaiting_rel_cnt: 0,
    awaiting_rel_max: 100,
    recv_msg: session.recvMsg,
    send_msg: session.sendMsg,
    // An offline session's socket counters went with its connection; EMQX keeps them per channel.
    ...('client' in session ? trafficOf((session as LiveSession).client) : { recv_oct: 0, recv_pkt: 0, send_oct: 0, send_pkt: 0 }),
    'recv_msg.dropped': 0,
    'send_msg.dropped': 0,
    'send_msg.dropped.queue_full': 0,
    'send_msg.dropped.expired': 0,
    'send_msg.dropped.too_large': 0,
    heap_size: 0,
    mailbox_len: 0,
    reductions: 0,
  };
}

/** An offline persistent session (devstack/broker/offline-sessions.ts): its last connection's facts, `connected: false`, its queue. */
function offlineClientInfo(session: OfflineSession): Record<string, unknown> {
  return {
    ...clientInfo(session),
    connected: false,
    disconnected_at: rfc3339(session.disconnectedAt),
    mqueue_len: session.mqueue.length,
    mqueue_dropped: session.mqueueDropped,
  };
}

const isOffline = (session: SessionFacts): session is OfflineSession => 'mqueue' in session;
const infoOf = (session: SessionFacts): Record<string, unknown> => (isOffline(session) ? offlineClientInfo(session) : clientInfo(session));

/** What `fields=` may name: the `client` schema's fields plus `client_attrs` (emqx_mgmt_api_clients.erl `fields(requested_client_fields)`). */
const CLIENT_FIELDS: ReadonlySet<string> = new Set([
  'client_attrs',
  'awaiting_rel_cnt',
  'awaiting_rel_max',
  'clean_start',
  'clientid',
  'connected',
  'connected_at',
  'created_at',
  'disconnected_at',
  'expiry_interval',
  'heap_size',
  'inflight_cnt',
  'inflight_max',
  'ip_address',
  'is_bridge',
  'is_expired',
  'keepalive',
  'mailbox_len',
  'mqueue_dropped',
  'mqueue_len',
  'mqueue_max',
  'node',
  'port',
  'proto_name',
  'proto_ver',
  'recv_cnt',
  'recv_msg',
  'recv_msg.dropped',
  'recv_msg.dropped.await_pubrel_timeout',
  'recv_msg.qos0',
  'recv_msg.qos1',
  'recv_msg.qos2',
  'recv_oct',
  'recv_pkt',
  'reductions',
  'send_cnt',
  'send_msg',
  'send_msg.dropped',
  'send_msg.dropped.expired',
  'send_msg.dropped.queue_full',
  'send_msg.dropped.too_large',
  'send_msg.qos0',
  'send_msg.qos1',
  'send_msg.qos2',
  'send_oct',
  'send_pkt',
  'subscriptions_cnt',
  'subscriptions_max',
  'username',
  'mountpoint',
  'durable',
  'n_streams',
  'seqno_q1_comm',
  'seqno_q1_dup',
  'seqno_q1_next',
  'seqno_q2_comm',
  'seqno_q2_dup',
  'seqno_q2_rec',
  'seqno_q2_next',
]);

/**
 * `fields=all` or a comma-separated list of client fields; anything else fails EMQX's query schema
 * (a 400), including `all` mixed with names (`t_query_clients_with_fields`).
 */
function requestedFields(query: Query): string[] | undefined {
  const raw = queryValue(query, 'fields');
  if (raw === undefined || raw === 'all') return undefined;
  const wanted = raw.split(',').filter((f) => f !== '');
  const unknown = wanted.find((f) => !CLIENT_FIELDS.has(f));
  if (unknown !== undefined || wanted.length === 0) throw badRequest(`fields: unknown client field ${unknown ?? '(none)'}`);
  return wanted;
}

function pickFields(info: Record<string, unknown>, fields: string[] | undefined): Record<string, unknown> {
  if (fields === undefined) return info;
  return Object.fromEntries(Object.entries(info).filter(([key]) => fields.includes(key)));
}

/** emqx_mgmt_api.erl `to_type/2`: a query value of the wrong type is 400 INVALID_PARAMETER naming it. */
function badValueType(key: string, type: string, value: string): ApiError {
  return apiError(400, 'INVALID_PARAMETER', `the ${key} parameter expected type is ${type}, but the value is ${value}`);
}

/** An IP address as `inet:parse_address/1` reads it, in the form the peer address is compared in. */
function ipParam(query: Query): string | undefined {
  const raw = queryValue(query, 'ip_address');
  if (raw === undefined) return undefined;
  if (isIP(raw) === 0) throw badValueType('ip_address', 'ip', raw);
  return raw;
}

/**
 * `gte_*`/`lte_*` on `created_at` and `connected_at`: an RFC 3339 time or epoch milliseconds
 * (`emqx_utils_calendar:epoch_millisecond()` in the query schema).
 */
function timeParam(query: Query, name: string): number | undefined {
  const raw = queryValue(query, name);
  if (raw === undefined) return undefined;
  const ms = /^-?\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (Number.isNaN(ms)) throw badRequest(`${name}: must be an RFC 3339 time or epoch milliseconds`);
  return ms;
}

function inRange(value: number, gte: number | undefined, lte: number | undefined): boolean {
  return (gte === undefined || value >= gte) && (lte === undefined || value <= lte);
}

/**
 * The filters of `GET /clients` (`?CLIENT_QSCHEMA` in emqx_mgmt_api_clients.erl). `node` names the
 * node to list: this one, or an error like EMQX's for a node it cannot reach (`list_clients/1`).
 */
function selectClients(sessions: SessionFacts[], query: Query): SessionFacts[] {
  const clientids = queryValues(query, 'clientid');
  const usernames = queryValues(query, 'username');
  const connState = queryValue(query, 'conn_state');
  const likeClientid = queryValue(query, 'like_clientid');
  const likeUsername = queryValue(query, 'like_username');
  const ipAddress = ipParam(query);
  const cleanStart = booleanParam(query, 'clean_start');
  const protoVer = integerParam(query, 'proto_ver');
  const node = queryValue(query, 'node');
  const created = [timeParam(query, 'gte_created_at'), timeParam(query, 'lte_created_at')] as const;
  const connected = [timeParam(query, 'gte_connected_at'), timeParam(query, 'lte_connected_at')] as const;
  if (connState !== undefined && !['connected', 'idle', 'disconnected'].includes(connState)) {
    throw badRequest('conn_state: must be connected, idle or disconnected');
  }
  if (node !== undefined && node !== NODE_NAME) {
    throw apiError(500, 'NODE_DOWN', `bad rpc call <<${JSON.stringify(node)}>>, Reason <<"invalid node">>`);
  }
  return sessions.filter(
    (s) =>
      (clientids.length === 0 || clientids.includes(s.clientid)) &&
      (usernames.length === 0 || (s.username !== undefined && usernames.includes(s.username))) &&
      (connState === undefined || connState === (isOffline(s) ? 'disconnected' : 'connected')) &&
      (likeClientid === undefined || s.clientid.includes(likeClientid)) &&
      (likeUsername === undefined || (s.username ?? '').includes(likeUsername)) &&
      (ipAddress === undefined || s.ipAddress === ipAddress) &&
      (cleanStart === undefined || s.cleanStart === cleanStart) &&
      (protoVer === undefined || s.protoVer === protoVer) &&
      inRange(s.createdAt, ...created) &&
      inRange(s.connectedAt, ...connected),
  );
}

export function registerClientRoutes(app: FastifyInstance, { aedes, sessions, metrics, ruleEngine }: ApiContext): void {
  const proxy = { aedes, sessions, metrics, ruleEngine };
  const liveSession = (clientid: string): LiveSession => {
    const session = sessions.get(clientid);
    if (!session) throw clientNotFound();
    return session;
  };
  /** A connected client or an offline session: EMQX subscribes and unsubscribes either (client-control.ts). */
  const proxyTarget = (clientid: string): ProxyTarget => {
    const target = proxyTargetOf(sessions, clientid);
    if (!target) throw clientNotFound();
    return target;
  };

  app.get<{ Querystring: Query }>('/api/v5/clients', (request) => {
    const page = pageRequest(request.query);
    const fields = requestedFields(request.query);
    const selected = selectClients([...sessions.list(), ...sessions.listOffline()], request.query);
    const fuzzy = queryValue(request.query, 'like_clientid') !== undefined || queryValue(request.query, 'like_username') !== undefined;
    const result = paginate(selected, page, { withCount: !fuzzy });
    return { ...result, data: result.data.map((s) => pickFields(infoOf(s), fields)) };
  });

  app.post('/api/v5/clients/kickout/bulk', async (request, reply) => {
    const clientids = parseBody(z.array(z.string()), request.body);
    await Promise.all(clientids.map(async (id) => (await kickClient(aedes, sessions, id)) || discardOfflineSession(aedes, sessions, metrics, id)));
    return reply.code(204).send();
  });

  app.get<ClientParams>('/api/v5/clients/:clientid', (request) => {
    const offline = sessions.getOffline(request.params.clientid);
    return offline ? offlineClientInfo(offline) : clientInfo(liveSession(request.params.clientid));
  });

  app.delete<ClientParams>('/api/v5/clients/:clientid', async (request, reply) => {
    const { clientid } = request.params;
    const ended = (await kickClient(aedes, sessions, clientid)) || (await discardOfflineSession(aedes, sessions, metrics, clientid));
    if (!ended) throw clientNotFound();
    return reply.code(204).send();
  });

  app.get<ClientParams>('/api/v5/clients/:clientid/subscriptions', (request) =>
    subscriptionView(sessions.getOffline(request.params.clientid) ?? liveSession(request.params.clientid)),
  );

  // emqx_mgmt_api_clients.erl subscribe/1: the filter is parsed before the client is looked up.
  app.post<ClientParams>('/api/v5/clients/:clientid/subscribe', async (request) => {
    const sub = parseBody(SubscribeRequest, request.body);
    const refusal = proxySubscribeRefusal(sub.topic, sub.nl);
    if (refusal === INVALID_SUBOPTS_NL) {
      throw apiError(400, 'INVALID_PARAMETER', 'Invalid Subscribe options: `no_local` not allowed for shared-sub. See [MQTT-3.8.3-4]');
    }
    if (refusal !== undefined) throw apiError(500, 'UNKNOWN_ERROR', refusal);
    const { clientid } = request.params;
    await subscribeOnBehalf(proxy, proxyTarget(clientid), sub.topic, sub);
    return { clientid, topic: sub.topic, qos: sub.qos, nl: sub.nl, rap: sub.rap, rh: sub.rh, node: NODE_NAME };
  });

  // emqx_mgmt_api_clients.erl subscribe_batch/1: 404 when the client has no session, else 200
  // with a per-topic outcome.
  app.post<ClientParams>('/api/v5/clients/:clientid/subscribe/bulk', async (request) => {
    const subs = parseBody(z.array(SubscribeRequest), request.body);
    const { clientid } = request.params;
    if (!proxyTargetOf(sessions, clientid)) throw clientNotFound();
    return subscribeBatchOnBehalf(proxy, clientid, subs, NODE_NAME);
  });

  app.post<ClientParams>('/api/v5/clients/:clientid/unsubscribe', async (request, reply) => {
    const { topic } = parseBody(UnsubscribeRequest, request.body);
    await unsubscribeOnBehalf(proxy, proxyTarget(request.params.clientid), topic);
    return reply.code(204).send();
  });

  app.post<ClientParams>('/api/v5/clients/:clientid/unsubscribe/bulk', async (request, reply) => {
    const topics = parseBody(z.array(UnsubscribeRequest), request.body);
    const target = proxyTarget(request.params.clientid);
    for (const { topic } of topics) await unsubscribeOnBehalf(proxy, target, topic);
    return reply.code(204).send();
  });
}
