import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { kickClient, subscribeOnBehalf, unsubscribeOnBehalf } from '../../client-control';
import { NODE_NAME, rfc3339, subscriptionView } from '../../emqx-formats';
import { discardOfflineSession } from '../../offline-sessions';
import type { LiveSession, OfflineSession, SessionFacts } from '../../sessions';
import { isValidTopicFilter } from '../../topic';
import type { ApiContext } from '../context';
import { badRequest, clientNotFound, parseBody } from '../errors';
import { booleanParam, integerParam, pageRequest, paginate, queryValue, queryValues, type Query } from '../pagination';

/**
 * Clients: list, look up, kick, and subscribe/unsubscribe on behalf (reference §4). As in EMQX,
 * a body that fails its schema is a 400 before the client is looked up.
 */

const SubscribeRequest = z.object({
  topic: z.string().refine(isValidTopicFilter, 'must be a valid topic filter'),
  qos: z.number().int().min(0).max(2).default(0),
  nl: z.number().int().min(0).max(1).default(0),
  rap: z.number().int().min(0).max(1).default(0),
  rh: z.number().int().min(0).max(2).default(0),
});
const UnsubscribeRequest = z.object({ topic: z.string().min(1) });

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

function selectClients(sessions: SessionFacts[], query: Query): SessionFacts[] {
  const clientids = queryValues(query, 'clientid');
  const usernames = queryValues(query, 'username');
  const connState = queryValue(query, 'conn_state');
  const likeClientid = queryValue(query, 'like_clientid');
  const likeUsername = queryValue(query, 'like_username');
  const ipAddress = queryValue(query, 'ip_address');
  const cleanStart = booleanParam(query, 'clean_start');
  const protoVer = integerParam(query, 'proto_ver');
  if (connState !== undefined && !['connected', 'idle', 'disconnected'].includes(connState)) {
    throw badRequest('conn_state: must be connected, idle or disconnected');
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
      (protoVer === undefined || s.protoVer === protoVer),
  );
}

/** `fields=a,b` (5.6+): only those keys of each client. */
function pickFields(info: Record<string, unknown>, fields: string | undefined): Record<string, unknown> {
  if (fields === undefined || fields === 'all') return info;
  const wanted = fields.split(',').map((f) => f.trim());
  return Object.fromEntries(Object.entries(info).filter(([key]) => wanted.includes(key)));
}

export function registerClientRoutes(app: FastifyInstance, { aedes, sessions, metrics }: ApiContext): void {
  const liveSession = (clientid: string): LiveSession => {
    const session = sessions.get(clientid);
    if (!session) throw clientNotFound();
    return session;
  };

  app.get<{ Querystring: Query }>('/api/v5/clients', (request) => {
    const page = pageRequest(request.query);
    const selected = selectClients([...sessions.list(), ...sessions.listOffline()], request.query);
    const fuzzy = queryValue(request.query, 'like_clientid') !== undefined || queryValue(request.query, 'like_username') !== undefined;
    const result = paginate(selected, page, { withCount: !fuzzy });
    const fields = queryValue(request.query, 'fields');
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

  app.post<ClientParams>('/api/v5/clients/:clientid/subscribe', async (request) => {
    const sub = parseBody(SubscribeRequest, request.body);
    const session = liveSession(request.params.clientid);
    await subscribeOnBehalf(session, sub.topic, sub);
    return { clientid: session.clientid, topic: sub.topic, qos: sub.qos, nl: sub.nl, rap: sub.rap, rh: sub.rh, node: NODE_NAME };
  });

  app.post<ClientParams>('/api/v5/clients/:clientid/subscribe/bulk', async (request) => {
    const subs = parseBody(z.array(SubscribeRequest), request.body);
    const session = liveSession(request.params.clientid);
    const results = [];
    for (const sub of subs) {
      await subscribeOnBehalf(session, sub.topic, sub);
      results.push({ clientid: session.clientid, topic: sub.topic, qos: sub.qos, nl: sub.nl, rap: sub.rap, rh: sub.rh, node: NODE_NAME });
    }
    return results;
  });

  app.post<ClientParams>('/api/v5/clients/:clientid/unsubscribe', async (request, reply) => {
    const { topic } = parseBody(UnsubscribeRequest, request.body);
    const session = liveSession(request.params.clientid);
    await unsubscribeOnBehalf(aedes, session, topic);
    return reply.code(204).send();
  });

  app.post<ClientParams>('/api/v5/clients/:clientid/unsubscribe/bulk', async (request, reply) => {
    const topics = parseBody(z.array(UnsubscribeRequest), request.body);
    const session = liveSession(request.params.clientid);
    for (const { topic } of topics) await unsubscribeOnBehalf(aedes, session, topic);
    return reply.code(204).send();
  });
}
