import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, parseEncryptionKeys } from '../../src/codec/encryption-codec';
import { buildCodecServer } from '../../src/codec/server';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

const TOKEN = 'codec-token-for-tests-0001';
const UI = 'http://127.0.0.1:8233';
let env: DeviceOpsTestEnv;
let base: string;
let close: () => Promise<void>;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  const app = buildCodecServer({ codec: new EncryptionCodec(parseEncryptionKeys(env.keys)), token: TOKEN, corsOrigins: [UI] });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  close = () => app.close();
});

afterAll(async () => {
  await close?.();
  await env?.close();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers }, body: JSON.stringify(body) });

describe('codec server', () => {
  it('decodes what the worker encoded into history, for the Temporal UI', async () => {
    await env.ops.provision({ clientId: 'codec-dev', password: 'codec-password-1', acl: [], subscriptions: [] });
    const raw = await env.temporal.connection.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: 'provision/codec-dev' } });
    const input = raw.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
    expect(input).toHaveLength(1);
    const wire = input.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
    }));
    expect(Buffer.from(wire[0]!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');

    const response = await post('/decode', { payloads: wire }, { authorization: `Bearer ${TOKEN}`, origin: UI });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe(UI);
    const decoded = (await response.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(decoded.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    const decodedInput = Buffer.from(decoded.payloads[0]!.data, 'base64').toString();
    // The workflow input carries the password hash the client made, never the password.
    expect(JSON.parse(decodedInput)).toMatchObject({ clientId: 'codec-dev', credentials: { passwordHash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(decodedInput).not.toContain('codec-password-1');
  });

  it('encodes with the first key and round-trips through /decode', async () => {
    const plain = { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hi"').toString('base64') }] };
    const auth = { authorization: `Bearer ${TOKEN}` };
    const encoded = (await (await post('/encode', plain, auth)).json()) as typeof plain;
    expect(Buffer.from(encoded.payloads[0]!.metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
    const decoded = (await (await post('/decode', encoded, auth)).json()) as typeof plain;
    expect(decoded).toEqual(plain);
  });

  it('rejects a missing or wrong token, and answers CORS preflight for the UI origin', async () => {
    expect((await post('/decode', { payloads: [] })).status).toBe(401);
    expect((await post('/decode', { payloads: [] }, { authorization: 'Bearer wrong-token-000000000' })).status).toBe(401);
    const preflight = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { origin: UI, 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/x-namespace/);
    const other = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect((await post('/decode', { payloads: 'nope' }, { authorization: `Bearer ${TOKEN}` })).status).toBe(400);
  });
});
