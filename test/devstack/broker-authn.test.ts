import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import {
  AUTHN_USERS,
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  connectRefusal,
  createUser,
  startTestBroker,
  unique,
  waitFor,
  type BrokerApi,
} from './broker-helpers';

/** Built-in database users (reference §2) and the MQTT CONNECT check against them. */

let broker: RunningBroker;
let api: BrokerApi;
const IMPORT_USERS = '/authentication/password_based%3Abuilt_in_database/import_users';

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

describe('authentication users API', () => {
  it('creates a user (201) and reads it back, bare, under the encoded and the plain authenticator id', async () => {
    const userId = unique('dev');
    const created = await api.post(AUTHN_USERS, { user_id: userId, password: 'pw-1' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ user_id: userId, is_superuser: false });
    for (const prefix of [AUTHN_USERS, '/authentication/password_based:built_in_database/users']) {
      const read = await api.get(`${prefix}/${encodeURIComponent(userId)}`);
      expect(read.status).toBe(200);
      expect(read.body).toEqual({ user_id: userId, is_superuser: false });
    }
  });

  it('answers 409 ALREADY_EXISTS for an existing user and 400 for a missing password', async () => {
    const userId = unique('dup');
    await createUser(api, userId, 'pw');
    const again = await api.post(AUTHN_USERS, { user_id: userId, password: 'other' });
    expect(again.status).toBe(409);
    expect(again.body).toEqual({ code: 'ALREADY_EXISTS', message: 'User already exists' });
    const missing = await api.post(AUTHN_USERS, { user_id: unique('nopw') });
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({ code: 'BAD_REQUEST', message: 'Missing required parameter: password' });
  });

  it('updates with PUT (200 with the user) and deletes with 204, then 404 User not found', async () => {
    const userId = unique('upd');
    await createUser(api, userId, 'old');
    const updated = await api.put(`${AUTHN_USERS}/${userId}`, { password: 'new', is_superuser: true });
    expect(updated.status).toBe(200);
    expect(updated.body).toEqual({ user_id: userId, is_superuser: true });
    expect((await api.delete(`${AUTHN_USERS}/${userId}`)).status).toBe(204);
    const gone = await api.get(`${AUTHN_USERS}/${userId}`);
    expect(gone.status).toBe(404);
    expect(gone.body).toEqual({ code: 'NOT_FOUND', message: 'User not found' });
    const deleteAgain = await api.delete(`${AUTHN_USERS}/${userId}`);
    expect(deleteAgain.status).toBe(404);
    expect(deleteAgain.body).toEqual({ code: 'NOT_FOUND', message: 'User not found' });
    expect((await api.put(`${AUTHN_USERS}/${userId}`, { password: 'x' })).status).toBe(404);
  });

  it('lists with pagination and the like_user_id and is_superuser filters (count left out for like_*)', async () => {
    const tag = unique('list');
    await createUser(api, `${tag}-a`, 'pw');
    await createUser(api, `${tag}-b`, 'pw', true);
    await createUser(api, `${tag}-c`, 'pw');
    const page1 = await api.get(`${AUTHN_USERS}?like_user_id=${tag}&limit=2&page=1`);
    expect(page1.status).toBe(200);
    expect(page1.body.data).toEqual([
      { user_id: `${tag}-a`, is_superuser: false },
      { user_id: `${tag}-b`, is_superuser: true },
    ]);
    expect(page1.body.meta).toEqual({ page: 1, limit: 2, hasnext: true });
    const page2 = await api.get(`${AUTHN_USERS}?like_user_id=${tag}&limit=2&page=2`);
    expect(page2.body.data).toEqual([{ user_id: `${tag}-c`, is_superuser: false }]);
    expect(page2.body.meta.hasnext).toBe(false);
    const superusers = await api.get(`${AUTHN_USERS}?like_user_id=${tag}&is_superuser=true`);
    expect(superusers.body.data).toEqual([{ user_id: `${tag}-b`, is_superuser: true }]);
    const all = await api.get(`${AUTHN_USERS}?limit=10000`);
    expect(typeof all.body.meta.count).toBe('number');
    expect(all.body.meta.count).toBe(all.body.data.length);
  });

  it('answers 404 for another authenticator', async () => {
    const response = await api.get('/authentication/password_based%3Ahttp/users');
    expect(response.status).toBe(404);
    expect(response.body.code).toBe('NOT_FOUND');
  });
});

describe('import_users (5.8.2+)', () => {
  it('imports plain users and reports success and override counts', async () => {
    const tag = unique('imp');
    await createUser(api, `${tag}-old`, 'pw');
    const response = await api.post(`${IMPORT_USERS}?type=plain`, [
      { user_id: `${tag}-new`, password: 'p1' },
      { user_id: `${tag}-old`, password: 'p2', is_superuser: true },
    ]);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ total: 2, success: 1, override: 1, skipped: 0, failed: 0 });
    expect((await api.get(`${AUTHN_USERS}/${tag}-old`)).body.is_superuser).toBe(true);
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: `${tag}-old`, password: 'p2' });
    await client.endAsync();
  });

  it('imports hashed users (sha256 of password + salt) and skips identical records', async () => {
    const userId = unique('hash');
    const salt = 'c0ffee';
    const passwordHash = createHash('sha256').update(`hashed-pw${salt}`).digest('hex');
    const entry = { user_id: userId, password_hash: passwordHash, salt, is_superuser: false };
    const first = await api.post(`${IMPORT_USERS}?type=hash`, [entry]);
    expect(first.body).toEqual({ total: 1, success: 1, override: 0, skipped: 0, failed: 0 });
    const second = await api.post(`${IMPORT_USERS}?type=hash`, [entry]);
    expect(second.body).toEqual({ total: 1, success: 0, override: 0, skipped: 1, failed: 0 });
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'hashed-pw' });
    await client.endAsync();
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'wrong' })).toBe(4);
  });

  it('requires the type parameter and a non-empty list', async () => {
    expect((await api.post(IMPORT_USERS, [{ user_id: 'x', password: 'y' }])).status).toBe(400);
    expect((await api.post(`${IMPORT_USERS}?type=other`, [{ user_id: 'x', password: 'y' }])).status).toBe(400);
    const empty = await api.post(`${IMPORT_USERS}?type=plain`, []);
    expect(empty.status).toBe(400);
    expect(empty.body.code).toBe('BAD_REQUEST');
  });
});

describe('MQTT CONNECT authentication', () => {
  it('accepts a client whose username and password match a user', async () => {
    const userId = unique('ok');
    await createUser(api, userId, 'right');
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'right' });
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  it('refuses a wrong password with return code 4 and a missing username with 5', async () => {
    const userId = unique('bad');
    await createUser(api, userId, 'right');
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'wrong' })).toBe(4);
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: userId })).toBe(4);
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c') })).toBe(5);
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: unique('nobody'), password: 'x' })).toBe(5);
  });

  it('sees password changes and deletions on the next CONNECT', async () => {
    const userId = unique('rot');
    await createUser(api, userId, 'first');
    await api.put(`${AUTHN_USERS}/${userId}`, { password: 'second' });
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'first' })).toBe(4);
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'second' });
    await client.endAsync();
    await api.delete(`${AUTHN_USERS}/${userId}`);
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'second' })).toBe(5);
  });

  it('counts authentication successes and failures in /metrics', async () => {
    const userId = unique('counted');
    await api.post(AUTHN_USERS, { user_id: userId, password: 'pw-counted' });
    const before = (await api.get('/metrics?aggregate=true')).body;
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('c'), username: unique('nobody'), password: 'x' })).toBe(5);
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'pw-counted' });
    await client.endAsync();
    const after = (await api.get('/metrics?aggregate=true')).body;
    expect(after['authentication.failure']).toBe(before['authentication.failure'] + 1);
    expect(after['authentication.success']).toBe(before['authentication.success'] + 1);
  });

  it('lets a superuser skip authorization', async () => {
    const userId = unique('root');
    const topic = `${unique('locked')}/t`;
    await createUser(api, userId, 'pw', true);
    await api.put(`${AUTHZ_RULES}/users/${userId}`, {
      username: userId,
      rules: [{ topic: '#', permission: 'deny', action: 'all' }],
    });
    const client = await connectClient(broker.mqttUrl, { clientId: unique('c'), username: userId, password: 'pw' });
    const granted = await client.subscribeAsync(topic, { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    const received = collectMessages(client);
    await client.publishAsync(topic, 'as root', { qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'as root'), { what: 'the superuser message' });
    await client.endAsync();
  });
});

describe('a broker with authentication disabled', () => {
  it('accepts anonymous clients', async () => {
    const { broker: open } = await startTestBroker({ authenticationEnabled: false });
    try {
      const client = await connectClient(open.mqttUrl, { clientId: unique('anon') });
      expect(client.connected).toBe(true);
      await client.endAsync();
    } finally {
      await open.close();
    }
  });
});
