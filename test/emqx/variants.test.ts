/**
 * The variants of EMQX answers that EMQX's and EMQX Cloud's API docs show (wrapped or bare bodies, 200 or
 * 204 on updates, older versions' answers), replayed with MockAgent.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EmqxBadRequestError, EmqxNotFoundError, EmqxUnavailableError } from '../../src/emqx';
import { json, mockEmqx, queryOf, type MockEmqx } from './mock-emqx';

const USERS = '/authentication/password_based%3Abuilt_in_database/users';
const IMPORT = '/authentication/password_based%3Abuilt_in_database/import_users';
const RULES = '/authorization/sources/built_in_database/rules';

let current: MockEmqx | undefined;
function setup(): MockEmqx {
  current = mockEmqx();
  return current;
}
afterEach(async () => {
  current?.agent.assertNoPendingInterceptors();
  await current?.close();
  current = undefined;
});

function bodyOf(body: unknown): unknown {
  return JSON.parse(String(body));
}

describe('wrapped and bare bodies', () => {
  it('reads a user whether or not it is wrapped in data', async () => {
    const emqx = setup();
    emqx.on('GET', `${USERS}/d1`).reply(200, { user_id: 'd1', is_superuser: false }, json);
    emqx.on('GET', `${USERS}/d1`).reply(200, { data: { user_id: 'd1', is_superuser: true } }, json);
    await expect(emqx.client.getUser('d1')).resolves.toEqual({ user_id: 'd1', is_superuser: false });
    await expect(emqx.client.getUser('d1')).resolves.toEqual({ user_id: 'd1', is_superuser: true });
  });

  it('reads client subscriptions as a bare array or wrapped, and null for an unknown client', async () => {
    const emqx = setup();
    const sub = { topic: 'devices/c1/cmd', qos: 1, clientid: 'c1', node: 'emqx@127.0.0.1', nl: 0, rap: 0, rh: 0 };
    emqx.on('GET', '/clients/c1/subscriptions').reply(200, [sub], json);
    emqx.on('GET', '/clients/c1/subscriptions').reply(200, { data: [sub] }, json);
    emqx.on('GET', '/clients/c1/subscriptions').reply(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' }, json);
    await expect(emqx.client.getClientSubscriptions('c1')).resolves.toEqual([sub]);
    await expect(emqx.client.getClientSubscriptions('c1')).resolves.toEqual([sub]);
    await expect(emqx.client.getClientSubscriptions('c1')).resolves.toBeNull();
  });
});

describe('users', () => {
  it('accepts 200 with a body and 204 without one on update', async () => {
    const emqx = setup();
    emqx.on('PUT', `${USERS}/d1`).reply(200, { user_id: 'd1', is_superuser: false }, json);
    emqx.on('PUT', `${USERS}/d1`).reply(204);
    await expect(emqx.client.updateUser('d1', { password: 'new-pass-1' })).resolves.toBeUndefined();
    await expect(emqx.client.updateUser('d1', { password: 'new-pass-2' })).resolves.toBeUndefined();
  });

  it('upserts: creates, or on 409 updates the password', async () => {
    const emqx = setup();
    const puts: unknown[] = [];
    emqx.on('POST', USERS).reply(201, { user_id: 'd1', is_superuser: false }, json);
    emqx.on('POST', USERS).reply(409, { code: 'ALREADY_EXISTS', message: 'User already exists' }, json);
    emqx.on('PUT', `${USERS}/d1`).reply((req) => {
      puts.push(bodyOf(req.body));
      return { statusCode: 200, data: { user_id: 'd1', is_superuser: false }, responseOptions: json };
    });
    await expect(emqx.client.upsertUser({ user_id: 'd1', password: 'pass-1' })).resolves.toBe('created');
    await expect(emqx.client.upsertUser({ user_id: 'd1', password: 'pass-2' })).resolves.toBe('updated');
    expect(puts).toEqual([{ password: 'pass-2', is_superuser: false }]);
  });

  it('treats 404 on delete as done with deleteUserIfExists, and throws with deleteUser', async () => {
    const emqx = setup();
    const notFound = { code: 'NOT_FOUND', message: 'User not found' };
    emqx.on('DELETE', `${USERS}/d1`).reply(204);
    emqx.on('DELETE', `${USERS}/d1`).reply(404, notFound, json);
    emqx.on('DELETE', `${USERS}/d1`).reply(404, notFound, json);
    await expect(emqx.client.deleteUserIfExists('d1')).resolves.toBe(true);
    await expect(emqx.client.deleteUserIfExists('d1')).resolves.toBe(false);
    await expect(emqx.client.deleteUser('d1')).rejects.toBeInstanceOf(EmqxNotFoundError);
  });

  it('imports users: counts from 5.8.2+ (200), synthesised counts from older versions (204)', async () => {
    const emqx = setup();
    const queries: Record<string, string[]>[] = [];
    const counts = { total: 2, success: 1, override: 1, skipped: 0, failed: 0 };
    emqx.on('POST', IMPORT).reply((req) => {
      queries.push(queryOf(req.path));
      return { statusCode: 200, data: counts, responseOptions: json };
    });
    emqx.on('POST', IMPORT).reply((req) => {
      queries.push(queryOf(req.path));
      return { statusCode: 204, data: '' };
    });
    const entries = [
      { user_id: 'd1', password: 'p1' },
      { user_id: 'd2', password: 'p2', is_superuser: false },
    ];
    await expect(emqx.client.importUsers('plain', entries)).resolves.toEqual({ ...counts, countsReported: true });
    await expect(emqx.client.importUsers('hash', [{ user_id: 'd3', password_hash: 'abcdef', salt: 'xyz' }])).resolves.toEqual({
      total: 1,
      success: 1,
      override: 0,
      skipped: 0,
      failed: 0,
      countsReported: false,
    });
    expect(queries).toEqual([{ type: ['plain'] }, { type: ['hash'] }]);
    await expect(emqx.client.importUsers('plain', [])).resolves.toMatchObject({ total: 0 });
  });
});

describe('pagination', () => {
  it('follows meta.hasnext over three pages and ignores a wrong count', async () => {
    const emqx = setup();
    const pages: Record<string, string[]>[] = [];
    emqx
      .on('GET', '/clients')
      .reply((req) => {
        const query = queryOf(req.path);
        pages.push(query);
        const page = Number(query.page?.[0]);
        const data = [{ clientid: `c${page}a` }, { clientid: `c${page}b` }];
        // `count` is deliberately wrong (and absent on the last page): only hasnext may decide.
        const meta = page < 3 ? { page, limit: 2, count: 2, hasnext: true } : { page, limit: 2, hasnext: false };
        return { statusCode: 200, data: { data, meta }, responseOptions: json };
      })
      .times(3);
    const all = await emqx.client.listAllClients({ clientid: ['x', 'y'], conn_state: 'connected' }, { pageSize: 2 });
    expect(all.map((c) => c.clientid)).toEqual(['c1a', 'c1b', 'c2a', 'c2b', 'c3a', 'c3b']);
    expect(pages.map((q) => q.page)).toEqual([['1'], ['2'], ['3']]);
    expect(pages[0]).toEqual({ clientid: ['x', 'y'], conn_state: ['connected'], page: ['1'], limit: ['2'] });
  });

  it('stops on an empty page that still claims hasnext', async () => {
    const emqx = setup();
    emqx.on('GET', USERS).reply(200, { data: [], meta: { page: 1, limit: 1000, hasnext: true } }, json);
    await expect(emqx.client.listAllUsers()).resolves.toEqual([]);
  });

  it('exposes a generic paginate over any list path', async () => {
    const emqx = setup();
    emqx.on('GET', '/subscriptions').reply(200, { data: [{ topic: 't/1' }], meta: { page: 1, limit: 10, hasnext: true } }, json);
    emqx.on('GET', '/subscriptions').reply(200, { data: [{ topic: 't/2' }], meta: { page: 2, limit: 10, hasnext: false } }, json);
    const topics: string[] = [];
    for await (const item of emqx.client.paginate('/subscriptions', { clientid: 'c1' }, z.object({ topic: z.string() }), { pageSize: 10 })) {
      topics.push(item.topic);
    }
    expect(topics).toEqual(['t/1', 't/2']);
  });

  it('paginates without a schema, yielding unknown items', async () => {
    const emqx = setup();
    emqx.on('GET', '/topics').reply(200, { data: [{ topic: 'a', node: 'n' }], meta: { page: 1, limit: 1000, hasnext: false } }, json);
    const items: unknown[] = [];
    for await (const item of emqx.client.paginate('/topics')) items.push(item);
    expect(items).toEqual([{ topic: 'a', node: 'n' }]);
  });
});

describe('clients', () => {
  it('returns null for an unknown client and false when kicking one', async () => {
    const emqx = setup();
    const notFound = { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' };
    emqx.on('GET', '/clients/ghost').reply(404, notFound, json);
    emqx.on('DELETE', '/clients/ghost').reply(404, notFound, json);
    emqx.on('DELETE', '/clients/c1').reply(204);
    await expect(emqx.client.getClient('ghost')).resolves.toBeNull();
    await expect(emqx.client.kickClient('ghost')).resolves.toBe(false);
    await expect(emqx.client.kickClient('c1')).resolves.toBe(true);
  });

  it('reports an offline client on unsubscribe as EmqxNotFoundError CLIENTID_NOT_FOUND', async () => {
    const emqx = setup();
    emqx.on('POST', '/clients/c1/unsubscribe').reply(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' }, json);
    await expect(emqx.client.unsubscribe('c1', 't')).rejects.toMatchObject({ type: 'EmqxNotFoundError', code: 'CLIENTID_NOT_FOUND' });
  });

  it('normalises both bodies of subscribe/bulk', async () => {
    const emqx = setup();
    const ok = { clientid: 'c1', topic: 'a', qos: 1, nl: 0, rap: 0, rh: 0, node: 'n' };
    emqx.on('POST', '/clients/c1/subscribe/bulk').reply(200, [ok], json);
    emqx
      .on('POST', '/clients/c1/subscribe/bulk')
      .reply(200, { succeed: [ok], failed: [{ data: ['c1', '$share/g/x', { qos: 0, nl: 1, rap: 0, rh: 0 }], reason: 'invalid_subopts_nl' }] }, json);
    await expect(emqx.client.subscribeBulk('c1', [{ topic: 'a', qos: 1 }])).resolves.toEqual({ succeeded: [ok], failed: [], clientGone: false });
    await expect(emqx.client.subscribeBulk('c1', [{ topic: 'a', qos: 1 }, { topic: '$share/g/x', nl: 1 }])).resolves.toEqual({
      succeeded: [ok],
      failed: [{ topic: '$share/g/x', reason: 'invalid_subopts_nl', clientGone: false }],
      clientGone: false,
    });
  });
});

describe('publish', () => {
  it('maps 200, 202 and a dispatch-failure 503 to outcomes, and a plain 503 to EmqxUnavailableError', async () => {
    const emqx = setup();
    const bodies: unknown[] = [];
    emqx.on('POST', '/publish').reply((req) => {
      bodies.push(bodyOf(req.body));
      return { statusCode: 200, data: { id: '000600D09A099053F445000014C30000' }, responseOptions: json };
    });
    emqx.on('POST', '/publish').reply(202, { reason_code: 16, message: 'no_matching_subscribers' }, json);
    emqx.on('POST', '/publish').reply(503, { reason_code: 131, message: 'failed_to_dispatch' }, json);
    emqx.on('POST', '/publish').reply(503, 'Service Unavailable');
    const msg = { topic: 'devices/d1/cmd', payload: Buffer.from([0, 1, 2]), qos: 1 as const, properties: { user_properties: { k: 'v' } } };
    await expect(emqx.client.publish(msg)).resolves.toEqual({ status: 'delivered', id: '000600D09A099053F445000014C30000' });
    expect(bodies[0]).toEqual({ topic: 'devices/d1/cmd', payload: 'AAEC', payload_encoding: 'base64', qos: 1, properties: { user_properties: { k: 'v' } } });
    await expect(emqx.client.publish({ topic: 't', payload: 'x' })).resolves.toEqual({ status: 'no_subscriber' });
    await expect(emqx.client.publish({ topic: 't', payload: 'x' })).resolves.toEqual({ status: 'failed', reasonCode: 131, message: 'failed_to_dispatch' });
    await expect(emqx.client.publish({ topic: 't', payload: 'x' })).rejects.toBeInstanceOf(EmqxUnavailableError);
  });

  it('maps each bulk item in request order, including a 503 array', async () => {
    const emqx = setup();
    const items = [{ id: 'A1' }, { reason_code: 16, message: 'no_matching_subscribers' }, { reason_code: 131, message: 'failed_to_dispatch' }];
    emqx.on('POST', '/publish/bulk').reply(202, items.slice(0, 2), json);
    emqx.on('POST', '/publish/bulk').reply(503, items, json);
    const two = [
      { topic: 'a', payload: '1' },
      { topic: 'b', payload: '2' },
    ];
    await expect(emqx.client.publishBulk(two)).resolves.toEqual([{ status: 'delivered', id: 'A1' }, { status: 'no_subscriber' }]);
    await expect(emqx.client.publishBulk([...two, { topic: 'c', payload: '3' }])).resolves.toEqual([
      { status: 'delivered', id: 'A1' },
      { status: 'no_subscriber' },
      { status: 'failed', reasonCode: 131, message: 'failed_to_dispatch' },
    ]);
    await expect(emqx.client.publishBulk([])).resolves.toEqual([]);
  });

  it('throws EmqxBadRequestError when the whole batch is rejected', async () => {
    const emqx = setup();
    emqx.on('POST', '/publish/bulk').reply(400, { reason_code: 151, message: 'packet_too_large' }, json);
    await expect(emqx.client.publishBulk([{ topic: 'a', payload: 'x'.repeat(10) }])).rejects.toMatchObject({
      type: EmqxBadRequestError.type,
      reasonCode: 151,
    });
  });
});

describe('ACL', () => {
  it('gets null for a client without rules, PUTs the whole list, POSTs the global list', async () => {
    const emqx = setup();
    const sent: { method: string; path: string; body: unknown }[] = [];
    const record = (statusCode: number) => (req: { method: string; path: string; body?: unknown }) => {
      sent.push({ method: req.method, path: req.path, body: bodyOf(req.body) });
      return { statusCode, data: '' };
    };
    const rules = [{ topic: 'devices/c1/#', permission: 'allow' as const, action: 'all' as const }];
    emqx.on('GET', `${RULES}/clients/c1`).reply(404, { code: 'NOT_FOUND', message: 'Not Found' }, json);
    emqx.on('GET', `${RULES}/clients/c1`).reply(200, { clientid: 'c1', rules }, json);
    emqx.on('PUT', `${RULES}/clients/c1`).reply(record(204));
    emqx.on('POST', `${RULES}/all`).reply(record(204));
    emqx.on('DELETE', `${RULES}/users/u1`).reply(404, { code: 'NOT_FOUND', message: 'Username Not Found' }, json);
    await expect(emqx.client.getAclRules({ clientid: 'c1' })).resolves.toBeNull();
    await emqx.client.putAclRules({ clientid: 'c1' }, rules);
    await expect(emqx.client.getAclRules({ clientid: 'c1' })).resolves.toEqual(rules);
    await emqx.client.putAclRules('all', [{ topic: '#', permission: 'deny', action: 'all' }]);
    await expect(emqx.client.deleteAclRules({ username: 'u1' })).resolves.toBe(false);
    expect(sent).toEqual([
      { method: 'PUT', path: `/api/v5${RULES}/clients/c1`, body: { clientid: 'c1', rules } },
      { method: 'POST', path: `/api/v5${RULES}/all`, body: { rules: [{ topic: '#', permission: 'deny', action: 'all' }] } },
    ]);
  });

  it('ignores CLIENTID_NOT_FOUND when clearing the authz cache only if asked', async () => {
    const emqx = setup();
    const notFound = { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' };
    emqx.on('DELETE', '/clients/c1/authorization/cache').reply(404, notFound, json).times(2);
    emqx.on('DELETE', '/authorization/cache').reply(204);
    await expect(emqx.client.clearAuthzCache('c1', { ignoreNotFound: true })).resolves.toBe(false);
    await expect(emqx.client.clearAuthzCache('c1')).rejects.toBeInstanceOf(EmqxNotFoundError);
    await expect(emqx.client.clearAllAuthzCache()).resolves.toBeUndefined();
  });
});

describe('stats and metrics', () => {
  it('reads aggregate objects, sums per-node arrays, and reads per-node arrays', async () => {
    const emqx = setup();
    const queries: Record<string, string[]>[] = [];
    emqx.on('GET', '/stats').reply((req) => {
      queries.push(queryOf(req.path));
      return { statusCode: 200, data: { 'live_connections.count': 3, 'topics.count': 5 }, responseOptions: json };
    });
    emqx.on('GET', '/stats').reply(
      200,
      [
        { node: 'a', 'live_connections.count': 1 },
        { node: 'b', 'live_connections.count': 2 },
      ],
      json,
    );
    emqx.on('GET', '/metrics').reply(200, [{ node: 'a', 'messages.received': 7, 'messages.sent': 6 }], json);
    await expect(emqx.client.getStats()).resolves.toEqual({ 'live_connections.count': 3, 'topics.count': 5 });
    expect(queries).toEqual([{ aggregate: ['true'] }]);
    await expect(emqx.client.getStats()).resolves.toEqual({ 'live_connections.count': 3 });
    await expect(emqx.client.getNodeMetrics()).resolves.toEqual([{ node: 'a', counters: { 'messages.received': 7, 'messages.sent': 6 } }]);
  });
});

describe('connectors, actions, rules', () => {
  it('upserts: on 400 already exists, PUTs the config without type and name', async () => {
    const emqx = setup();
    let put: unknown;
    emqx.on('POST', '/connectors').reply(400, { code: 'ALREADY_EXISTS', message: 'connector already exists' }, json);
    emqx.on('PUT', '/connectors/http%3Adevice_ops').reply((req) => {
      put = bodyOf(req.body);
      return { statusCode: 200, data: { type: 'http', name: 'device_ops' }, responseOptions: json };
    });
    const result = await emqx.client.upsertConnector({ type: 'http', name: 'device_ops', url: 'http://127.0.0.1:8080' });
    expect(result).toBe('updated');
    expect(put).toEqual({ url: 'http://127.0.0.1:8080' });
  });

  it('sets up the event webhook, keeping the token out of errors', async () => {
    const emqx = setup();
    const bodies: unknown[] = [];
    const record = (req: { body?: unknown }) => {
      bodies.push(bodyOf(req.body));
      return { statusCode: 201, data: {}, responseOptions: json };
    };
    emqx.on('POST', '/connectors').reply(record);
    emqx.on('POST', '/actions').reply(record);
    emqx.on('POST', '/rules').reply(400, { code: 'BAD_REQUEST', message: 'rule id already exists' }, json);
    emqx.on('PUT', '/rules/device_ops_events').reply(record);
    const result = await emqx.client.ensureEventWebhook({ url: 'http://127.0.0.1:8080/emqx/events', token: 'tok-1234567890' });
    expect(result).toEqual({ connector: 'created', action: 'created', rule: 'updated', ruleId: 'device_ops_events' });
    expect(bodies[1]).toMatchObject({
      type: 'http',
      name: 'device_ops',
      connector: 'device_ops',
      parameters: { path: '/emqx/events', method: 'post', headers: { authorization: 'Bearer tok-1234567890' } },
    });
    expect(bodies[2]).toMatchObject({ actions: ['http:device_ops'], enable: true });
    expect((bodies[2] as { sql: string }).sql).toContain('"$events/client_connected"');

    emqx.on('POST', '/connectors').reply(201, {}, json);
    emqx.on('POST', '/actions').reply(400, { code: 'BAD_REQUEST', message: 'bad header: Bearer tok-1234567890' }, json);
    const err = await emqx.client.ensureEventWebhook({ url: 'http://x:1/e', token: 'tok-1234567890' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmqxBadRequestError);
    expect((err as Error).message).not.toContain('tok-1234567890');
  });
});
