import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createEmqxClient,
  EmqxBadRequestError,
  EmqxConflictError,
  EmqxError,
  EmqxInputError,
  EmqxNotFoundError,
  EmqxResponseError,
  EmqxUnauthorizedError,
  EmqxUnavailableError,
  isRetryable,
  nonRetryableEmqxErrorTypes,
} from '../../src/emqx';
import { API_KEY, API_SECRET, json, mockEmqx, type MockEmqx } from './mock-emqx';

const USERS = '/authentication/password_based%3Abuilt_in_database/users';

async function failureOf(promise: Promise<unknown>): Promise<EmqxError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof EmqxError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

let current: MockEmqx | undefined;
function setup(opts: { timeoutMs?: number } = {}): MockEmqx {
  current = mockEmqx(opts);
  return current;
}
afterEach(async () => {
  await current?.close();
  current = undefined;
});

describe('transport', () => {
  it('sends HTTP Basic credentials, JSON and the path joined to the base URL', async () => {
    const emqx = setup();
    const seen: { path: string; headers: unknown; body: unknown }[] = [];
    emqx.on('POST', USERS).reply((req) => {
      seen.push({ path: req.path, headers: req.headers, body: req.body });
      return { statusCode: 201, data: { user_id: 'd1', is_superuser: false }, responseOptions: json };
    });
    await emqx.client.createUser({ user_id: 'd1', password: 'pw-123456' });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.path).toBe('/api/v5/authentication/password_based%3Abuilt_in_database/users');
    expect(seen[0]?.headers).toMatchObject({
      authorization: `Basic ${Buffer.from(`${API_KEY}:${API_SECRET}`).toString('base64')}`,
      'content-type': 'application/json',
      accept: 'application/json',
    });
    expect(JSON.parse(String(seen[0]?.body))).toEqual({ user_id: 'd1', password: 'pw-123456' });
  });

  it('URL-encodes path parameters', async () => {
    const emqx = setup();
    let path = '';
    emqx.on('GET', /^\/clients\//).reply((req) => {
      path = req.path;
      return { statusCode: 200, data: { clientid: 'a/b c', connected: true }, responseOptions: json };
    });
    await emqx.client.getClient('a/b c');
    expect(path).toBe('/api/v5/clients/a%2Fb%20c');
  });

  it('calls GET /status without credentials and reports a 503 as not running', async () => {
    const emqx = setup();
    const auth: unknown[] = [];
    emqx
      .on('GET', '/status')
      .reply((req) => {
        auth.push((req.headers as Record<string, string>).authorization);
        return { statusCode: 200, data: { node_name: 'emqx@127.0.0.1', rel_vsn: 'v5.8.9', broker_status: 'started' }, responseOptions: json };
      })
      .times(1);
    emqx.on('GET', '/status').reply(503, 'Node emqx@127.0.0.1 is stopped');
    await expect(emqx.client.status()).resolves.toEqual({
      running: true,
      status: 200,
      nodeName: 'emqx@127.0.0.1',
      version: 'v5.8.9',
      brokerStatus: 'started',
    });
    await expect(emqx.client.status()).resolves.toEqual({ running: false, status: 503 });
    expect(auth).toEqual([undefined]);
  });
});

describe('error mapping', () => {
  const cases = [
    { status: 404, body: { code: 'NOT_FOUND', message: 'User not found' }, type: EmqxNotFoundError, retryable: false },
    { status: 409, body: { code: 'ALREADY_EXISTS', message: 'User already exists' }, type: EmqxConflictError, retryable: false },
    { status: 400, body: { code: 'BAD_REQUEST', message: 'rule id already exists' }, type: EmqxConflictError, retryable: false },
    { status: 400, body: { code: 'ALREADY_EXISTS', message: 'connector exists' }, type: EmqxConflictError, retryable: false },
    { status: 400, body: { code: 'BAD_REQUEST', message: 'Missing required parameter: password' }, type: EmqxBadRequestError, retryable: false },
    { status: 401, body: { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' }, type: EmqxUnauthorizedError, retryable: false },
    { status: 403, body: { code: 'UNAUTHORIZED_ROLE', message: 'no' }, type: EmqxUnauthorizedError, retryable: false },
    { status: 429, body: { code: 'TOO_MANY_REQUESTS', message: 'slow down' }, type: EmqxUnavailableError, retryable: true },
    { status: 500, body: { code: 'NODE_DOWN', message: 'node down' }, type: EmqxUnavailableError, retryable: true },
    { status: 503, body: 'Service Unavailable', type: EmqxUnavailableError, retryable: true },
  ] as const;

  for (const c of cases) {
    it(`maps ${c.status} ${typeof c.body === 'string' ? c.body : c.body.code} to ${c.type.type}`, async () => {
      const emqx = setup();
      emqx.on('PUT', `${USERS}/d1`).reply(c.status, c.body, json);
      const err = await failureOf(emqx.client.updateUser('d1', { password: 'pw-123456' }));
      expect(err).toBeInstanceOf(c.type);
      expect(err.type).toBe(c.type.type);
      expect(err.name).toBe(c.type.name);
      expect(err.status).toBe(c.status);
      expect(err.retryable).toBe(c.retryable);
      expect(isRetryable(err)).toBe(c.retryable);
      expect(err.method).toBe('PUT');
      expect(err.path).toBe(`${USERS}/d1`);
      if (typeof c.body !== 'string') expect(err.code).toBe(c.body.code);
    });
  }

  it('uses the class name as the type Temporal records, and lists the final ones', () => {
    for (const type of [EmqxNotFoundError, EmqxConflictError, EmqxBadRequestError, EmqxUnauthorizedError, EmqxUnavailableError]) {
      expect(type.type).toBe(type.name);
    }
    expect(nonRetryableEmqxErrorTypes).toContain('EmqxBadRequestError');
    expect(nonRetryableEmqxErrorTypes).not.toContain('EmqxUnavailableError');
  });

  it('carries reason_code of /publish-style errors', async () => {
    const emqx = setup();
    emqx.on('POST', '/publish').reply(400, { reason_code: 144, message: 'topic_name_invalid' }, json);
    const err = await failureOf(emqx.client.publish({ topic: 'a/b', payload: 'x' }));
    expect(err).toBeInstanceOf(EmqxBadRequestError);
    expect(err.reasonCode).toBe(144);
    expect(err.code).toBe('REASON_CODE_144');
    expect(err.message).toContain('topic_name_invalid');
  });

  it('keeps the API secret and passwords out of error messages', async () => {
    const emqx = setup();
    const credentials = Buffer.from(`${API_KEY}:${API_SECRET}`).toString('base64');
    emqx.on('POST', USERS).reply(400, { code: 'BAD_REQUEST', message: `bad value pw-very-secret for key ${API_SECRET} (${credentials})` }, json);
    emqx.on('GET', '/clients').replyWithError(new Error(`socket hang up; authorization: Basic ${credentials}`));
    const badRequest = await failureOf(emqx.client.createUser({ user_id: 'd1', password: 'pw-very-secret' }));
    const network = await failureOf(emqx.client.listClients());
    for (const err of [badRequest, network]) {
      const everything = `${err.message} ${err.stack ?? ''} ${JSON.stringify(err)} ${String(err.cause)}`;
      expect(everything).not.toContain(API_SECRET);
      expect(everything).not.toContain(credentials);
      expect(everything).not.toContain('pw-very-secret');
    }
    expect(badRequest.message).toContain('***');
    expect(network).toBeInstanceOf(EmqxUnavailableError);
    expect(network.code).toBe('CONNECTION_ERROR');
  });

  it('rejects a 2xx body of the wrong shape with EmqxResponseError naming the field', async () => {
    const emqx = setup();
    emqx.on('GET', `${USERS}/d1`).reply(200, { user_id: 42 }, json);
    const err = await failureOf(emqx.client.getUser('d1'));
    expect(err).toBeInstanceOf(EmqxResponseError);
    expect(err.message).toContain('user_id');
  });
});

describe('input validation', () => {
  it('rejects bad input before sending anything, naming the field', async () => {
    const emqx = setup();
    await expect(emqx.client.getClient('')).rejects.toThrow(/clientid: must be a non-empty string/);
    await expect(emqx.client.kickClient('')).rejects.toMatchObject({ type: EmqxInputError.type, retryable: false });
    await expect(emqx.client.createUser({ user_id: 'd1', password: '' })).rejects.toThrow(/user\.password/);
    await expect(emqx.client.subscribe('c1', { topic: 't', qos: 3 as 0 })).rejects.toThrow(/subscription\.qos/);
    await expect(emqx.client.publish({ topic: 'a/+', payload: 'x' })).rejects.toThrow(/message\.topic: must be a topic name/);
    await expect(emqx.client.putAclRules({ clientid: 'c1' }, [{ topic: 't', permission: 'maybe' as 'allow', action: 'all' }])).rejects.toThrow(
      /rules\.0\.permission/,
    );
    await expect(emqx.client.updateUser('d1', {} as { password: string })).rejects.toThrow(/update\.password/);
    expect(() => createEmqxClient({ baseUrl: 'ftp://x', apiKey: 'k', apiSecret: 's' })).toThrow(/baseUrl/);
    expect(() => createEmqxClient({ baseUrl: 'http://x/api/v5', apiKey: 'k', apiSecret: '' })).toThrow(/apiSecret/);
    expect(() => createEmqxClient({ baseUrl: 'http://x/api/v5', apiKey: 'k', apiSecret: 's', connections: 0 })).toThrow(/connections/);
    emqx.agent.assertNoPendingInterceptors();
  });
});

describe('timeouts, aborts and connection errors', () => {
  it('turns a reply slower than timeoutMs into a retryable EmqxUnavailableError', async () => {
    const emqx = setup({ timeoutMs: 50 });
    emqx.on('GET', '/nodes').reply(200, [], json).delay(2_000);
    const started = Date.now();
    const err = await failureOf(emqx.client.listNodes());
    expect(err).toBeInstanceOf(EmqxUnavailableError);
    expect(err.code).toBe('TIMEOUT');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/timed out after 50 ms/);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('rejects with the caller’s abort reason when the caller aborts', async () => {
    const emqx = setup();
    emqx.on('GET', '/nodes').reply(200, [], json).delay(2_000);
    const controller = new AbortController();
    const call = emqx.client.listNodes({ signal: controller.signal });
    const reason = new Error('activity cancelled');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
  });

  describe('against real sockets', () => {
    const servers: http.Server[] = [];
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
    });

    async function listen(handler: http.RequestListener): Promise<number> {
      const server = http.createServer(handler);
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return (server.address() as AddressInfo).port;
    }

    it('times out on a server that never answers', async () => {
      const port = await listen(() => undefined);
      const client = createEmqxClient({ baseUrl: `http://127.0.0.1:${port}/api/v5`, apiKey: 'k', apiSecret: 's', timeoutMs: 100 });
      try {
        const err = await failureOf(client.getStats());
        expect(err).toBeInstanceOf(EmqxUnavailableError);
        expect(err.code).toBe('TIMEOUT');
        // The server has the request: whatever it did with it is unknown to the caller.
        expect(err.mayHaveApplied).toBe(true);
      } finally {
        await client.close();
        servers[0]?.closeAllConnections();
      }
    });

    it('reports a refused connection as a retryable EmqxUnavailableError', async () => {
      const port = await listen(() => undefined);
      await new Promise((resolve) => servers.pop()?.close(resolve));
      const client = createEmqxClient({ baseUrl: `http://127.0.0.1:${port}/api/v5`, apiKey: 'k', apiSecret: 's' });
      try {
        const err = await failureOf(client.getStats());
        expect(err).toBeInstanceOf(EmqxUnavailableError);
        expect(err.code).toBe('CONNECTION_ERROR');
        expect(err.message).toContain('ECONNREFUSED');
        expect(isRetryable(err)).toBe(true);
        expect(err.mayHaveApplied).toBe(false);
      } finally {
        await client.close();
      }
    });

    it('reports a connection reset after the request was received as one that may have been applied', async () => {
      let received = 0;
      const port = await listen((req) => {
        received += 1;
        req.socket.destroy();
      });
      const client = createEmqxClient({ baseUrl: `http://127.0.0.1:${port}/api/v5`, apiKey: 'k', apiSecret: 's' });
      try {
        const err = await failureOf(client.publishBulk([{ topic: 'a/b', payload: 'x' }]));
        expect(received).toBe(1);
        expect(err).toBeInstanceOf(EmqxUnavailableError);
        expect(err.code).toBe('CONNECTION_ERROR');
        expect(err.mayHaveApplied).toBe(true);
      } finally {
        await client.close();
      }
    });

    it('reuses kept-alive connections for sequential requests', async () => {
      const sockets = new Set<unknown>();
      const port = await listen((req, res) => {
        sockets.add(req.socket);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ 'live_connections.count': 1 }));
      });
      const client = createEmqxClient({ baseUrl: `http://127.0.0.1:${port}/api/v5/`, apiKey: 'k', apiSecret: 's' });
      try {
        for (let i = 0; i < 10; i += 1) await expect(client.getStats()).resolves.toEqual({ 'live_connections.count': 1 });
        // undici may open a second socket while the first finishes its response; it does not open ten.
        expect(sockets.size).toBeLessThanOrEqual(2);
      } finally {
        await client.close();
      }
    });
  });
});
