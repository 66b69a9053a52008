import { createHash, timingSafeEqual } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { PublishRequest } from '../publish';
import type { ApiContext } from './context';
import { ApiError, badRequest } from './errors';
import { registerAuthnConfigRoutes } from './routes/authn-config';
import { registerAuthnUserRoutes } from './routes/authn-users';
import { registerAuthzConfigRoutes } from './routes/authz-config';
import { registerAuthzRuleRoutes } from './routes/authz-rules';
import { registerClientRoutes } from './routes/clients';
import { registerDevstackFaultRoutes } from './routes/devstack-faults';
import { registerObservabilityRoutes } from './routes/observability';
import { registerPublishRoutes } from './routes/publish';
import { registerRuleEngineRoutes } from './routes/rule-engine';
import { registerStatusRoutes } from './routes/status';
import { registerSubscriptionRoutes } from './routes/subscriptions';

/**
 * The EMQX 5 REST API subset under `/api/v5`, plus `/devstack/faults`. Every call but the status
 * endpoints needs HTTP Basic auth with the API key and secret
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_auth.erl).
 */

export interface ApiServerOptions {
  apiKey: string;
  apiSecret: string;
  logger: FastifyBaseLogger;
}

const PUBLIC_PATHS = new Set(['/api/v5/status', '/status']);
const FAULT_EXEMPT_PATHS = new Set(['/api/v5/status', '/status', '/devstack/faults']);
const WWW_AUTHENTICATE = 'Basic Realm="emqx-dashboard"';

export function buildApiServer(context: ApiContext, options: ApiServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024 * 1024,
    forceCloseConnections: true,
    routerOptions: { ignoreTrailingSlash: true },
  });

  acceptLenientJsonBodies(app);
  const credentials = apiCredentials(options.apiKey, options.apiSecret);

  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    if (!PUBLIC_PATHS.has(path)) {
      const rejection = checkBasicAuth(request.headers.authorization, credentials);
      if (rejection) return reply.code(401).header('www-authenticate', WWW_AUTHENTICATE).send(rejection);
    }
    if (FAULT_EXEMPT_PATHS.has(path)) return;
    const faults = context.faults.get();
    if (faults.restLatencyMs > 0) await delay(faults.restLatencyMs);
    if (context.faults.shouldFailRestCall()) {
      return reply.code(503).send({ code: 'SERVICE_UNAVAILABLE', message: 'injected fault' });
    }
  });

  // Runs once the handler has applied the request (a publish is already routed).
  app.addHook('onSend', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (FAULT_EXEMPT_PATHS.has(path)) return;
    const { restAnswerDelayMs } = context.faults.get();
    if (restAnswerDelayMs > 0) await delay(restAnswerDelayMs);
  });

  rejectUnknownFields(app);
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ code: 'NOT_FOUND', message: 'Request path not found' }));
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => answerError(error, request, reply));

  registerStatusRoutes(app);
  registerAuthnConfigRoutes(app, context);
  registerAuthnUserRoutes(app, context);
  registerAuthzConfigRoutes(app, context);
  registerAuthzRuleRoutes(app, context);
  registerClientRoutes(app, context);
  registerSubscriptionRoutes(app, context);
  registerPublishRoutes(app, context);
  registerObservabilityRoutes(app, context);
  registerRuleEngineRoutes(app, context);
  registerDevstackFaultRoutes(app, context);
  return app;
}

/**
 * Bodies EMQX checks against a hocon struct before the handler runs (`check_schema => true` in the
 * module's api_spec/0, e.g. emqx_mgmt_api_publish.erl), which refuses any field it does not know.
 * Routes with a zod schema refuse them there (`z.strictObject`); these share a schema with code
 * that keeps unknown fields, so they are checked here.
 */
const STRICT_BODY_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  '/api/v5/publish': new Set(Object.keys(PublishRequest.shape)),
  '/api/v5/publish/bulk': new Set(Object.keys(PublishRequest.shape)),
};

function rejectUnknownFields(app: FastifyInstance): void {
  app.addHook('preHandler', (request, _reply, done) => {
    const allowed = request.method === 'POST' ? STRICT_BODY_FIELDS[request.url.split('?')[0] ?? ''] : undefined;
    const items: unknown[] = Array.isArray(request.body) ? request.body : [request.body];
    const unknown = allowed
      ? items.flatMap((item) => (item !== null && typeof item === 'object' ? Object.keys(item).filter((key) => !allowed.has(key)) : []))
      : [];
    done(unknown.length > 0 ? badRequest(`unknown_fields: ${[...new Set(unknown)].join(', ')}`) : undefined);
  });
}

function answerError(error: Error & { statusCode?: number }, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof ApiError) return reply.code(error.status).send(error.body);
  const status = error.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return reply.code(status).send({ code: 'BAD_REQUEST', message: error.message });
  }
  request.log.error({ err: error }, 'unhandled error in broker API');
  return reply.code(500).send({ code: 'UNKNOWN_ERROR', message: 'internal error' });
}

/**
 * JSON whatever the content type, and an empty body as no body: generic HTTP clients send
 * `content-type: application/json` on DELETE without a body, which EMQX accepts. Parse errors
 * never echo the body (it may hold passwords).
 */
function acceptLenientJsonBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    void parseJson(request, text, (err, value) => (err ? done(badRequest('Invalid JSON body'), undefined) : done(null, value)));
  });
}

interface ApiCredentials {
  keyDigest: Buffer;
  secretDigest: Buffer;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function apiCredentials(apiKey: string, apiSecret: string): ApiCredentials {
  return { keyDigest: digest(apiKey), secretDigest: digest(apiSecret) };
}

/** The 401 body for a request that fails Basic auth, or undefined when it passes. */
function checkBasicAuth(header: string | undefined, credentials: ApiCredentials): { code: string; message: string } | undefined {
  const basic = header === undefined ? null : /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!basic) return { code: 'AUTHORIZATION_HEADER_ERROR', message: 'Support authorization: basic/bearer ' };
  const decoded = Buffer.from(basic[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const keyOk = colon > 0 && timingSafeEqual(digest(decoded.slice(0, colon)), credentials.keyDigest);
  const secretOk = colon > 0 && timingSafeEqual(digest(decoded.slice(colon + 1)), credentials.secretDigest);
  return keyOk && secretOk ? undefined : { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' };
}
