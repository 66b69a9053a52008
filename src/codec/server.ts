import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { bearerToken, secretMatcher } from '../http/shared-secret';
import { createJwtVerifier, TokenRejected, type JwtSettings } from './jwt';

/**
 * The codec server for the Temporal UI and CLI (Temporal's codec-server contract): POST /decode and
 * /encode take and return `{payloads: [{metadata: {k: base64}, data: base64}]}`. Decrypted data goes
 * only to the caller that asked; the Temporal server keeps ciphertext.
 *
 * Who may call it:
 * - Host must be one of CODEC_ALLOWED_HOSTS: a DNS-rebinding page in the operator's browser reaches
 *   the server under its own host name, and is refused.
 * - A browser's Origin must be one of CODEC_CORS_ORIGINS (the Temporal UI).
 * - With authentication configured (a static CODEC_SERVER_TOKEN for programmatic callers, and/or the
 *   identity provider's JWKS for the access token the Temporal UI passes), every /decode and /encode
 *   call needs one of them. Without it the server only runs on loopback (checked at start), and
 *   /encode, an encryption service with the production key, is not offered at all.
 * - Bodies are bounded (CODEC_SERVER_BODY_LIMIT) and a request must arrive in full within
 *   CODEC_SERVER_REQUEST_TIMEOUT, so slow uploads cannot hold connections.
 */

const WirePayload = z.object({
  metadata: z.record(z.string(), z.string()).optional(),
  data: z.string().optional(),
});
const PayloadsBody = z.object({ payloads: z.array(WirePayload).max(10_000) });
type WirePayload = z.infer<typeof WirePayload>;

function fromWire(p: WirePayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(p.data ?? '', 'base64'),
  };
}

function toWire(p: Payload): WirePayload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}

export class CodecServerConfigError extends Error {
  readonly type = 'CodecServerConfigError';
  constructor(message: string) {
    super(message);
    this.name = 'CodecServerConfigError';
  }
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** The address the server will listen on: beyond loopback, authentication is required. */
  bindHost: string;
  corsOrigins: string[];
  /** Host names (without port) the server answers to. */
  allowedHosts: string[];
  /** Static bearer token for programmatic callers. */
  token?: string;
  /** Verification of the identity provider's access tokens (passed by the Temporal UI). */
  jwt?: JwtSettings;
  bodyLimit?: number;
  requestTimeoutMs?: number;
}

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

/** The host name of a Host header (`name:port`, `[v6]:port`), lower-cased. */
function hostName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(header.trim().toLowerCase());
  return match?.[1]?.replace(/^\[|\]$/g, '');
}

export function buildCodecServer(options: CodecServerOptions): FastifyInstance {
  const authConfigured = options.token !== undefined || options.jwt !== undefined;
  if (!authConfigured && !isLoopback(options.bindHost)) {
    throw new CodecServerConfigError(
      `CODEC_SERVER_HOST=${options.bindHost} is reachable beyond loopback, and the codec server decrypts for anyone who reaches it: ` +
        'set CODEC_SERVER_TOKEN (programmatic callers) and/or CODEC_JWKS_URL, CODEC_JWT_ISSUER and CODEC_JWT_AUDIENCE (the Temporal UI passing its access token), or bind to 127.0.0.1',
    );
  }
  const requestTimeout = options.requestTimeoutMs ?? 10_000;
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 4 * 1_048_576,
    logger: false,
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
      // Node enforces requestTimeout on its connection-checking tick, so the tick is set to match.
      createServer(
        { requestTimeout, headersTimeout: Math.min(requestTimeout, 10_000), connectionsCheckingInterval: Math.max(100, Math.floor(requestTimeout / 4)) },
        handler,
      ),
  });
  const origins = new Set(options.corsOrigins);
  const hosts = new Set(options.allowedHosts.map((h) => h.toLowerCase().replace(/^\[|\]$/g, '')));
  const tokenMatches = options.token ? secretMatcher(options.token) : null;
  const verifyJwt = options.jwt ? createJwtVerifier(options.jwt) : null;
  const authenticated = new WeakSet<FastifyRequest>();

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const host = hostName(request.headers.host);
    if (!host || !hosts.has(host)) {
      return reply.code(403).send({ error: `Host "${request.headers.host ?? ''}" is not one this server answers to (CODEC_ALLOWED_HOSTS)` });
    }
    const origin = request.headers.origin;
    if (origin !== undefined) {
      if (!origins.has(origin)) return reply.code(403).send({ error: `Origin "${origin}" is not allowed (CODEC_CORS_ORIGINS)` });
      void reply.header('access-control-allow-origin', origin);
      void reply.header('vary', 'origin');
      void reply.header('access-control-allow-methods', 'POST, GET, OPTIONS');
      void reply.header('access-control-allow-headers', 'x-namespace, content-type, authorization');
      void reply.header('access-control-allow-credentials', 'true');
    }
    if (request.method === 'OPTIONS') return reply.code(204).send();
    if (request.url === '/healthz') return;
    const token = bearerToken(request.headers.authorization);
    if (token !== undefined && tokenMatches?.(token)) {
      authenticated.add(request);
      return;
    }
    if (token !== undefined && verifyJwt) {
      try {
        await verifyJwt(token);
        authenticated.add(request);
        return;
      } catch (err) {
        const reason = err instanceof TokenRejected ? err.message : 'token cannot be verified';
        return reply.code(401).header('www-authenticate', 'Bearer').send({ error: reason });
      }
    }
    if (authConfigured) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token' });
  });

  const route = (path: '/encode' | '/decode', run: (payloads: Payload[]) => Promise<Payload[]>): void => {
    app.post(path, async (request, reply) => {
      if (path === '/encode' && !authenticated.has(request)) {
        return reply.code(403).send({ error: '/encode is offered only to authenticated callers (configure CODEC_SERVER_TOKEN or CODEC_JWKS_URL)' });
      }
      const parsed = PayloadsBody.safeParse(request.body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        return reply.code(400).send({ error: `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}` });
      }
      try {
        const out = await run(parsed.data.payloads.map(fromWire));
        return { payloads: out.map(toWire) };
      } catch (err) {
        return reply.code(400).send({ error: err instanceof Error ? err.message : 'cannot process payloads' });
      }
    });
  };
  route('/encode', (p) => options.codec.encode(p));
  route('/decode', (p) => options.codec.decode(p));
  app.get('/healthz', () => ({ status: 'ok' }));
  return app;
}
