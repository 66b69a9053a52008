import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { createTokenCheck } from '../http/shared-secret';
import { InvalidEventError, KNOWN_EVENTS, parseEventBody } from './emqx-events';
import { SinkUnavailableError, type EventSink } from './event-sink';
import type { RejectReason, WebhookMetrics } from './metrics';
import { registerReplyRoute, type ReplyHandler } from './replies';

/**
 * The webhook adapter's HTTP server (docs/webhook-adapter.md): `POST /emqx/events` takes EMQX rule-engine
 * HTTP-action bodies, `GET /healthz`, `GET /metrics`. Answers follow EMQX's retry rules
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl): 2xx is
 * done; 503 is retried, so it is the answer whenever the events could not be kept; every other 4xx is final,
 * so it is kept for input that will never be valid (bad token, bad JSON, bad fields, too large).
 */

export interface WebhookServerDeps {
  /** The shared secret (WEBHOOK_TOKEN). */
  token: string;
  sink: EventSink;
  metrics: WebhookMetrics;
  /** Bytes; larger bodies get 413. Default 1 MiB. */
  bodyLimit?: number;
  /** Resolves when MongoDB answers; /healthz reports 503 otherwise. */
  pingStore: () => Promise<void>;
  logger?: FastifyServerOptions['loggerInstance'];
  /** Called with each POST /emqx/events response time in milliseconds. */
  onAnswered?: (ms: number) => void;
  connections?: Partial<ConnectionLimits>;
  /** Device job statuses and command replies (`POST /emqx/replies`, src/webhook/replies.ts). */
  replies?: ReplyHandler;
  /** Replies stored and not yet applied by this adapter (healthz, metrics). */
  repliesBacklog?: () => number;
}

export const DEFAULT_BODY_LIMIT = 1_048_576;

/**
 * How many connections the adapter keeps and for how long. EMQX's HTTP action keeps `pool_size`
 * (default 8) keep-alive connections per node, pipelines up to 100 requests on each, and gives up
 * on a request after 30 s (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl:
 * fields(config), DEFAULT_PIPELINE_SIZE, DEFAULT_REQUEST_TIMEOUT_MS): a few dozen connections that
 * send steadily. Everything else (idle sockets, slow headers) is closed early, so it cannot use up
 * the process's file descriptors.
 */
export interface ConnectionLimits {
  /** Connections open at once; further ones are closed as they arrive (WEBHOOK_MAX_CONNECTIONS). */
  maxConnections: number;
  /** A connection that sends nothing for this long, before or during a request, is closed (WEBHOOK_IDLE_TIMEOUT). */
  idleTimeoutMs: number;
  /** Complete request headers must arrive within this (WEBHOOK_HEADERS_TIMEOUT); 408 otherwise. */
  headersTimeoutMs: number;
  /** The whole request must arrive within this (WEBHOOK_REQUEST_TIMEOUT); 408 otherwise. */
  requestTimeoutMs: number;
  /** A keep-alive connection idle between requests is closed after this (WEBHOOK_KEEPALIVE_TIMEOUT). */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 512,
  idleTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 75_000,
};

export function buildServer(deps: WebhookServerDeps): FastifyInstance {
  const { metrics, sink } = deps;
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...deps.connections };
  const app = Fastify({
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // A storm is thousands of requests a second: log problems, not every request (metrics count them).
    logController: new LogController({ disableRequestLogging: true }),
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    http: {
      // Node rejects a headers timeout longer than the request timeout.
      headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
      // Node checks header and request deadlines this often (default 30 s, which would stretch them).
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  app.server.maxConnections = limits.maxConnections;
  const tokenMatches = createTokenCheck(deps.token);

  const reject = (reply: FastifyReply, status: number, reason: RejectReason, message: string): FastifyReply => {
    metrics.countRejected(reason);
    if (status === 503) void reply.header('retry-after', '1');
    return reply.code(status).send({ error: reason, message });
  };

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status === 413) return reject(reply, 413, 'too_large', 'request body is too large');
    if (status === 415) return reject(reply, 415, 'unsupported_media_type', 'send application/json');
    if (status === 400) return reject(reply, 400, 'bad_json', 'body is not valid JSON');
    // Anything unexpected: 503, so EMQX retries instead of dropping the events.
    request.log.error({ err: error }, 'webhook request failed');
    return reject(reply, 503, 'unavailable', 'try again');
  });

  app.setNotFoundHandler((request, reply) => reject(reply, 404, 'not_found', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`));

  app.post(
    '/emqx/events',
    {
      // Before the body is read: a caller without the token gets nothing parsed or stored.
      onRequest: async (request, reply) => {
        // Closed after the answer: a caller without the token does not keep a connection slot.
        if (!tokenMatches(request.headers)) return reject(reply.header('connection', 'close'), 401, 'unauthorized', 'missing or wrong token');
      },
      onResponse: async (_request, reply) => {
        metrics.observeDuration(reply.elapsedTime / 1_000);
        deps.onAnswered?.(reply.elapsedTime);
      },
    },
    async (request, reply) => {
      let parsed;
      try {
        parsed = parseEventBody(request.body, new Date());
      } catch (err) {
        if (err instanceof InvalidEventError) return reject(reply, 400, 'invalid_event', err.message);
        throw err;
      }
      for (const name of parsed.names) metrics.countReceived(name, KNOWN_EVENTS);
      metrics.ignored += parsed.ignored;
      try {
        const result = await sink.accept(parsed);
        metrics.stored += result.stored;
        metrics.duplicates += result.duplicates;
        return { accepted: parsed.names.length, stored: result.stored, duplicates: result.duplicates, ignored: parsed.ignored };
      } catch (err) {
        if (!(err instanceof SinkUnavailableError)) throw err;
        request.log.warn({ reason: err.message }, 'events not kept; answering 503 so EMQX retries');
        return reject(reply, 503, 'unavailable', 'events could not be stored; retry');
      }
    },
  );

  if (deps.replies) registerReplyRoute(app, { handler: deps.replies, tokenMatches, reject });

  app.get('/healthz', async (_request, reply) => {
    const mongo = await withTimeout(deps.pingStore(), 2_000).then(
      () => 'up' as const,
      () => 'down' as const,
    );
    const body = { status: mongo === 'up' ? 'ok' : 'unavailable', mongo, temporal: sink.temporalUp() ? 'up' : 'down', inboxDepth: sink.depth(), repliesUnapplied: deps.repliesBacklog?.() ?? 0 };
    return reply.code(mongo === 'up' ? 200 : 503).send(body);
  });

  app.get('/metrics', async (_request, reply) =>
    reply.type('text/plain; version=0.0.4').send(metrics.render({ inboxDepth: sink.depth(), temporalUp: sink.temporalUp(), repliesUnapplied: deps.repliesBacklog?.() ?? 0 })),
  );

  return app;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
