import type { Payload, PayloadCodec } from '@temporalio/common';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { bearerToken, secretMatcher } from '../webhook/auth';

/**
 * The codec server for the Temporal UI and CLI (Temporal's codec-server contract): POST /decode and
 * /encode take and return `{payloads: [{metadata: {k: base64}, data: base64}]}`. Decrypted data goes
 * only to the browser that asked; the Temporal server keeps ciphertext. CORS allows the UI's origin;
 * a bearer token, when configured, is required.
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

export function buildCodecServer(deps: { codec: PayloadCodec; token?: string; corsOrigins: string[] }): FastifyInstance {
  const app = Fastify({ bodyLimit: 16 * 1024 * 1024, logger: false });
  const allowed = new Set(deps.corsOrigins);
  const tokenMatches = deps.token ? secretMatcher(deps.token) : null;

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin;
    if (origin && allowed.has(origin)) {
      void reply.header('access-control-allow-origin', origin);
      void reply.header('vary', 'origin');
      void reply.header('access-control-allow-methods', 'POST, GET, OPTIONS');
      void reply.header('access-control-allow-headers', 'x-namespace, content-type, authorization');
      void reply.header('access-control-allow-credentials', 'true');
    }
    if (request.method === 'OPTIONS') return reply.code(204).send();
    if (request.url === '/healthz') return;
    if (tokenMatches && !tokenMatches(bearerToken(request.headers.authorization))) {
      return reply.code(401).send({ error: 'missing or wrong bearer token' });
    }
  });

  const route = (path: '/encode' | '/decode', run: (payloads: Payload[]) => Promise<Payload[]>): void => {
    app.post(path, async (request, reply) => {
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
  route('/encode', (p) => deps.codec.encode(p));
  route('/decode', (p) => deps.codec.decode(p));
  app.get('/healthz', () => ({ status: 'ok' }));
  return app;
}
