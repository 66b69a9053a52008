import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, parseEncryptionKeys } from '../../src/codec/encryption-codec';
import { buildCodecServer, CodecServerConfigError, type CodecServerOptions } from '../../src/codec/server';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

/**
 * The codec server over real HTTP: the Temporal UI's access token (its "pass access token" codec
 * setting sends `Authorization: Bearer <token>`) verified against a local JWKS server with keys made
 * here, a static token for programmatic callers, Host/Origin allow-lists, body and time bounds.
 */

const TOKEN = 'codec-token-for-tests-0001';
const UI = 'http://127.0.0.1:8233';
const ISSUER = 'https://idp.test';
const AUDIENCE = 'temporal-ui';
let env: DeviceOpsTestEnv;
let codec: EncryptionCodec;
let jwks: Server;
let jwksUrl: string;
const servers: FastifyInstance[] = [];

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  codec = new EncryptionCodec(parseEncryptionKeys(env.keys));
  jwks = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        keys: [
          { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
          { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
        ],
      }),
    );
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await new Promise((resolve) => jwks?.close(resolve));
  await env?.close();
});

async function serve(overrides: Partial<CodecServerOptions> = {}): Promise<string> {
  const app = buildCodecServer({ codec, bindHost: '127.0.0.1', corsOrigins: [UI], allowedHosts: ['127.0.0.1', 'localhost'], token: TOKEN, jwt: { issuer: ISSUER, audience: AUDIENCE, jwksUrl }, ...overrides });
  servers.push(app);
  return app.listen({ host: '127.0.0.1', port: 0 });
}

function jwt(claims: Record<string, unknown>, options: { alg?: string; kid?: string; key?: KeyObject } = {}): string {
  const alg = options.alg ?? 'RS256';
  const header = Buffer.from(JSON.stringify({ alg, kid: options.kid ?? (alg === 'ES256' ? 'ec-1' : 'rsa-1'), typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const key = options.key ?? (alg === 'ES256' ? ec.privateKey : rsa.privateKey);
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${header}.${payload}.${signature.toString('base64url')}`;
}

const valid = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ iss: ISSUER, aud: AUDIENCE, sub: 'operator', exp: Math.floor(Date.now() / 1000) + 300, ...extra });

/** node:http rather than fetch, so the Host header can be set as a rebinding page's browser would. */
function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; json: () => unknown }> {
  const url = new URL(path, base);
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: () => JSON.parse(Buffer.concat(chunks).toString()) as unknown }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

const plain = { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hi"').toString('base64') }] };

describe('codec server', () => {
  it('decodes what the worker encoded into history, for the Temporal UI passing its access token', async () => {
    const base = await serve();
    await env.ops.provision({ clientId: 'codec-dev', password: 'codec-password-1', acl: [], subscriptions: [] });
    const raw = await env.temporal.connection.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: 'provision/codec-dev' } });
    const input = raw.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
    expect(input).toHaveLength(1);
    const wire = input.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
    }));
    expect(Buffer.from(wire[0]!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');

    const response = await post(base, '/decode', { payloads: wire }, { authorization: `Bearer ${jwt(valid())}`, origin: UI });
    expect(response.status).toBe(200);
    expect(response.headers['access-control-allow-origin']).toBe(UI);
    const decoded = response.json() as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(decoded.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    const decodedInput = Buffer.from(decoded.payloads[0]!.data, 'base64').toString();
    // The workflow input carries the password hash the client made, never the password.
    expect(JSON.parse(decodedInput)).toMatchObject({ clientId: 'codec-dev', credentials: { passwordHash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(decodedInput).not.toContain('codec-password-1');
  });

  it('accepts RS256 and ES256 tokens from the JWKS, and the static token; round-trips /encode', async () => {
    const base = await serve();
    for (const authorization of [`Bearer ${jwt(valid())}`, `Bearer ${jwt(valid({ aud: ['other', AUDIENCE] }), { alg: 'ES256' })}`, `Bearer ${TOKEN}`]) {
      const encoded = await post(base, '/encode', plain, { authorization });
      expect(encoded.status).toBe(200);
      const body = encoded.json() as typeof plain;
      expect(Buffer.from(body.payloads[0]!.metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
      expect((await post(base, '/decode', body, { authorization })).json()).toEqual(plain);
    }
  });

  it('rejects tokens that are expired, for another issuer or audience, unsigned, HMAC-signed with the public key, or signed by another key', async () => {
    const base = await serve();
    const rsaPublicPem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const { createHmac } = await import('node:crypto');
    const hsHeader = Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'rsa-1' })).toString('base64url');
    const hsPayload = Buffer.from(JSON.stringify(valid())).toString('base64url');
    const hs256 = `${hsHeader}.${hsPayload}.${createHmac('sha256', rsaPublicPem).update(`${hsHeader}.${hsPayload}`).digest('base64url')}`;
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'rsa-1' })).toString('base64url')}.${hsPayload}.`;
    const cases: [string, RegExp][] = [
      [jwt(valid({ exp: Math.floor(Date.now() / 1000) - 3600 })), /expired/],
      [jwt(valid({ iss: 'https://evil.test' })), /issuer/],
      [jwt(valid({ aud: 'someone-else' })), /audience/],
      [jwt({ iss: ISSUER, aud: AUDIENCE }), /expiry/],
      [none, /algorithm "none"/],
      [hs256, /algorithm "HS256"/],
      [jwt(valid(), { key: stranger.privateKey }), /signature/],
      [jwt(valid(), { kid: 'unknown-kid' }), /not in the JWKS/],
      ['wrong-token-000000000', /JWS/],
    ];
    for (const [token, reason] of cases) {
      const response = await post(base, '/decode', { payloads: [] }, { authorization: `Bearer ${token}` });
      expect(response.status, String(reason)).toBe(401);
      expect((response.json() as { error: string }).error).toMatch(reason);
    }
    expect((await post(base, '/decode', { payloads: [] })).status).toBe(401);
  });

  it('refuses Host headers it does not serve (DNS rebinding) and origins other than the UI, and answers the UI preflight', async () => {
    const base = await serve();
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await post(base, '/decode', { payloads: [] }, { ...auth, host: 'rebind.evil.example:8888' })).status).toBe(403);
    expect((await post(base, '/decode', { payloads: [] }, { ...auth, origin: 'http://evil.example' })).status).toBe(403);
    expect((await post(base, '/decode', { payloads: [] }, { ...auth, host: `localhost:${new URL(base).port}` })).status).toBe(200);
    const preflight = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { origin: UI, 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    expect((await post(base, '/decode', { payloads: 'nope' }, auth)).status).toBe(400);
  });

  it('without authentication runs only on loopback, where it decodes but offers no /encode', async () => {
    expect(() => buildCodecServer({ codec, bindHost: '0.0.0.0', corsOrigins: [UI], allowedHosts: ['localhost'] })).toThrow(CodecServerConfigError);
    expect(() => buildCodecServer({ codec, bindHost: '0.0.0.0', corsOrigins: [UI], allowedHosts: ['localhost'] })).toThrow(/CODEC_SERVER_TOKEN.*CODEC_JWKS_URL/);
    const base = await serve({ token: undefined, jwt: undefined });
    expect((await post(base, '/encode', plain)).status).toBe(403);
    expect((await post(base, '/decode', plain)).status).toBe(200);
  });

  it('bounds the body size, and times out a slow upload', async () => {
    const base = await serve({ bodyLimit: 1024, requestTimeoutMs: 500 });
    expect((await post(base, '/decode', { payloads: [{ data: 'A'.repeat(4096) }] }, { authorization: `Bearer ${TOKEN}` })).status).toBe(413);

    const { port } = new URL(base);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1');
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString()));
      socket.on('close', () => resolve(received));
      socket.on('error', reject);
      socket.write(`POST /decode HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"payl`);
      // and nothing more: the server must not wait for the rest forever
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
