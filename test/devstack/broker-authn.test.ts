import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import { hashPassword, type PasswordHashAlgorithm } from '../../devstack/broker/users';
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

/**
 * The built-in database authenticator: its configuration API, its users, EMQX's password hashing
 * and the MQTT CONNECT check, on a broker configured as `device-ops emqx setup` leaves it
 * (user_id_type clientid, sha256 with a prefix salt) unless a test says otherwise.
 * EMQX sources: https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl and
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/test/emqx_authn/emqx_authn_password_hashing_SUITE.erl.
 */

let broker: RunningBroker;
let api: BrokerApi;
const IMPORT_USERS = '/authentication/password_based%3Abuilt_in_database/import_users';
const AUTHENTICATOR = '/authentication/password_based%3Abuilt_in_database';

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

  it('answers 400 "User error" for another authenticator once the global chain exists (serialize_error/1)', async () => {
    const response = await api.get('/authentication/password_based%3Ahttp/users');
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ code: 'BAD_REQUEST', message: 'User error: {not_found,{authenticator,<<"password_based:http">>}}' });
  });
});

describe('the authenticator configuration API', () => {
  it('shows the authenticator emqx setup creates: user_id_type clientid, sha256 with a prefix salt', async () => {
    const list = await api.get('/authentication');
    expect(list.status).toBe(200);
    expect(list.body).toEqual([
      {
        id: 'password_based:built_in_database',
        mechanism: 'password_based',
        backend: 'built_in_database',
        user_id_type: 'clientid',
        password_hash_algorithm: { name: 'sha256', salt_position: 'prefix' },
        enable: true,
      },
    ]);
    expect((await api.get(AUTHENTICATOR)).body).toEqual(list.body[0]);
    const again = await api.post('/authentication', { mechanism: 'password_based', backend: 'built_in_database' });
    expect(again.status).toBe(409);
    expect(again.body).toEqual({ code: 'ALREADY_EXISTS', message: "Authenticator 'password_based:built_in_database' already exist" });
  });

  it('starts stock without an authenticator: users answer 404 until one is created, which takes EMQX defaults', async () => {
    const { broker: stock, api: stockApi } = await startTestBroker({ stock: true });
    try {
      expect((await stockApi.get('/authentication')).body).toEqual([]);
      expect(await stockApi.get(AUTHENTICATOR)).toMatchObject({
        status: 404,
        body: { code: 'NOT_FOUND', message: "Authenticator 'password_based:built_in_database' does not exist" },
      });
      expect((await stockApi.get(`${AUTHN_USERS}/someone`)).body).toEqual({
        code: 'NOT_FOUND',
        message: "Authenticator not found in the 'global' scope",
      });
      // Anyone may connect to a stock EMQX.
      const anonymous = await connectClient(stock.mqttUrl, { clientId: unique('anon') });
      await anonymous.endAsync();

      const created = await stockApi.post('/authentication', { mechanism: 'password_based', backend: 'built_in_database' });
      expect(created.status).toBe(200);
      expect(created.body).toMatchObject({ user_id_type: 'username', password_hash_algorithm: { name: 'sha256', salt_position: 'prefix' } });
      // No password is a bad password (emqx_authn_mnesia:authenticate/2), an unknown id not authorized.
      expect(await connectRefusal(stock.mqttUrl, { clientId: unique('anon') })).toBe(4);
      expect(await connectRefusal(stock.mqttUrl, { clientId: unique('anon'), username: 'nobody', password: 'pw' })).toBe(5);

      expect((await stockApi.delete(AUTHENTICATOR)).status).toBe(204);
      // The global chain stays once created: now a user call names the missing authenticator.
      const gone = await stockApi.get(`${AUTHN_USERS}/someone`);
      expect(gone).toMatchObject({ status: 400, body: { code: 'BAD_REQUEST' } });
      expect(gone.body.message).toMatch(/^User error: \{not_found,\{authenticator,/);
    } finally {
      await stock.close();
    }
  });

  it('refuses unknown mechanisms, changes of type and bad settings with 400', async () => {
    expect((await api.post('/authentication', { mechanism: 'password_based', backend: 'http' })).body).toEqual({
      code: 'BAD_REQUEST',
      message: 'Unsupported authentication type',
    });
    const retype = await api.put(AUTHENTICATOR, { mechanism: 'jwt', backend: 'built_in_database' });
    expect(retype.body).toEqual({ code: 'BAD_REQUEST', message: 'Change of authentication type is not allowed' });
    const badType = await api.put(AUTHENTICATOR, { mechanism: 'password_based', backend: 'built_in_database', user_id_type: 'ip' });
    expect(badType.status).toBe(400);
    expect(badType.body.message).toMatch(/^user_id_type: /);
    expect((await api.get(AUTHENTICATOR)).body.user_id_type).toBe('clientid');
  });
});

/** EMQX's own vectors (emqx_authn_password_hashing_SUITE hash_examples/0), bcrypt left out. */
const HASH_EXAMPLES: { password: string; salt: string; hash: string; algorithm: PasswordHashAlgorithm }[] = [
  { password: 'plain', salt: 'salt', hash: 'plainsalt', algorithm: { name: 'plain', salt_position: 'suffix' } },
  { password: 'md5', salt: 'salt', hash: '1bc29b36f623ba82aaf6724fd3b16718', algorithm: { name: 'md5', salt_position: 'disable' } },
  { password: 'sha', salt: 'salt', hash: 'c665d4c0a9e5498806b7d9fd0b417d272853660e', algorithm: { name: 'sha', salt_position: 'prefix' } },
  {
    password: 'sha256',
    salt: 'salt',
    hash: 'ac63a624e7074776d677dd61a003b8c803eb11db004d0ec6ae032a5d7c9c5caf',
    algorithm: { name: 'sha256', salt_position: 'prefix' },
  },
  {
    password: 'sha512',
    salt: 'salt',
    hash: 'a1509ab67bfacbad020927b5ac9d91e9100a82e33a0ebb01459367ce921c0aa8157aa5652f94bc84fa3babc08283e44887d61c48bcf8ad7bcb3259ee7d0eafcd',
    algorithm: { name: 'sha512', salt_position: 'prefix' },
  },
  {
    password: 'password',
    salt: 'ATHENA.MIT.EDUraeburn',
    hash: '01dbee7f4a9e243e988b62c73cda935da05378b93244ec8f48a99e61ad799d86',
    algorithm: { name: 'pbkdf2', mac_fun: 'sha', iterations: 2, dk_length: 32 },
  },
  {
    password: 'password',
    salt: 'ATHENA.MIT.EDUraeburn',
    hash: '01dbee7f4a9e243e988b62c73cda935da05378b9',
    algorithm: { name: 'pbkdf2', mac_fun: 'sha', iterations: 2 },
  },
];

describe('password hashing as EMQX (emqx_authn_password_hashing_SUITE)', () => {
  it('t_check_password: every example hash is what the broker computes', () => {
    for (const example of HASH_EXAMPLES) {
      expect(hashPassword(example.algorithm, example.password, example.salt), example.algorithm.name).toBe(example.hash);
      expect(hashPassword(example.algorithm, 'wrongpass', example.salt)).not.toBe(example.hash);
    }
  });

  it('sha256 puts the salt first by default: a suffix-salted hash is refused at CONNECT', async () => {
    const clientId = unique('order');
    const salt = 'c0ffee';
    const suffixed = createHash('sha256').update(`pw-order${salt}`).digest('hex');
    await api.post(`${IMPORT_USERS}?type=hash`, [{ user_id: clientId, password_hash: suffixed, salt }]);
    expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId, password: 'pw-order' })).toBe(4);
    const prefixed = createHash('sha256').update(`${salt}pw-order`).digest('hex');
    await api.post(`${IMPORT_USERS}?type=hash`, [{ user_id: clientId, password_hash: prefixed, salt }]);
    const client = await connectClient(broker.mqttUrl, { clientId, username: clientId, password: 'pw-order' });
    await client.endAsync();
  });

  it('checks imported hashes with the configured algorithm, each EMQX example at CONNECT', async () => {
    const { broker: other, api: otherApi } = await startTestBroker();
    try {
      for (const example of HASH_EXAMPLES) {
        const set = await otherApi.put(AUTHENTICATOR, {
          mechanism: 'password_based',
          backend: 'built_in_database',
          user_id_type: 'clientid',
          password_hash_algorithm: example.algorithm,
        });
        expect(set.status, JSON.stringify(set.body)).toBe(204);
        const clientId = unique(`vec-${example.algorithm.name}`);
        // An upper-case hex hash compares equal (emqx_passwd's compare_secure_caseless).
        const imported = await otherApi.post(IMPORT_USERS, [{ user_id: clientId, password_hash: example.hash.toUpperCase(), salt: example.salt }]);
        expect(imported.body).toEqual({ total: 1, success: 1, override: 0, skipped: 0, failed: 0 });
        const client = await connectClient(other.mqttUrl, { clientId, username: clientId, password: example.password });
        await client.endAsync();
        expect(await connectRefusal(other.mqttUrl, { clientId, username: clientId, password: 'wrongpass' })).toBe(4);
      }
    } finally {
      await other.close();
    }
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
    const client = await connectClient(broker.mqttUrl, { clientId: `${tag}-old`, username: `${tag}-old`, password: 'p2' });
    await client.endAsync();
  });

  it('imports hashed users (sha256 of salt + password) and skips identical records', async () => {
    const userId = unique('hash');
    const salt = 'c0ffee';
    const passwordHash = createHash('sha256').update(`${salt}hashed-pw`).digest('hex');
    const entry = { user_id: userId, password_hash: passwordHash, salt, is_superuser: false };
    const first = await api.post(`${IMPORT_USERS}?type=hash`, [entry]);
    expect(first.body).toEqual({ total: 1, success: 1, override: 0, skipped: 0, failed: 0 });
    const second = await api.post(`${IMPORT_USERS}?type=hash`, [entry]);
    expect(second.body).toEqual({ total: 1, success: 0, override: 0, skipped: 1, failed: 0 });
    const client = await connectClient(broker.mqttUrl, { clientId: userId, username: userId, password: 'hashed-pw' });
    await client.endAsync();
    expect(await connectRefusal(broker.mqttUrl, { clientId: userId, username: userId, password: 'wrong' })).toBe(4);
  });

  it('reads a missing or unknown type as hash (emqx_authn_user_import_api:password_type/1) and refuses an empty list', async () => {
    const userId = unique('untyped');
    const passwordHash = createHash('sha256').update('s1untyped-pw').digest('hex');
    const untyped = await api.post(IMPORT_USERS, [{ user_id: userId, password_hash: passwordHash, salt: 's1' }]);
    expect(untyped.body).toEqual({ total: 1, success: 1, override: 0, skipped: 0, failed: 0 });
    const client = await connectClient(broker.mqttUrl, { clientId: userId, username: userId, password: 'untyped-pw' });
    await client.endAsync();
    // A plain entry sent without type is read as a hash entry and lacks password_hash.
    expect((await api.post(IMPORT_USERS, [{ user_id: 'x', password: 'y' }])).status).toBe(400);
    const empty = await api.post(`${IMPORT_USERS}?type=plain`, []);
    expect(empty.status).toBe(400);
    expect(empty.body.code).toBe('BAD_REQUEST');
  });
});

describe('MQTT CONNECT authentication (user_id_type clientid)', () => {
  it('accepts a client whose client id and password match a user, whatever username it gives', async () => {
    const clientId = unique('ok');
    await createUser(api, clientId, 'right');
    // MQTT 3.1.1 sends a password only with a username [MQTT-3.1.2-22]; which one does not matter.
    for (const username of [clientId, unique('any-name')]) {
      const client = await connectClient(broker.mqttUrl, { clientId, username, password: 'right' });
      expect(client.connected).toBe(true);
      await client.endAsync();
    }
  });

  it('refuses a wrong or missing password with return code 4 and an unknown client id with 5', async () => {
    const clientId = unique('bad');
    await createUser(api, clientId, 'right');
    expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId, password: 'wrong' })).toBe(4);
    expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId })).toBe(4);
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('nobody'), username: clientId, password: 'right' })).toBe(5);
  });

  it('sees password changes and deletions on the next CONNECT', async () => {
    const clientId = unique('rot');
    await createUser(api, clientId, 'first');
    await api.put(`${AUTHN_USERS}/${clientId}`, { password: 'second' });
    expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId, password: 'first' })).toBe(4);
    const client = await connectClient(broker.mqttUrl, { clientId, username: clientId, password: 'second' });
    await client.endAsync();
    await api.delete(`${AUTHN_USERS}/${clientId}`);
    expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId, password: 'second' })).toBe(5);
  });

  it('keys users by username again when the authenticator says user_id_type username', async () => {
    const { broker: other, api: otherApi } = await startTestBroker();
    try {
      await otherApi.put(AUTHENTICATOR, { mechanism: 'password_based', backend: 'built_in_database', user_id_type: 'username' });
      const username = unique('by-name');
      await createUser(otherApi, username, 'pw');
      const client = await connectClient(other.mqttUrl, { clientId: unique('any-client'), username, password: 'pw' });
      await client.endAsync();
      expect(await connectRefusal(other.mqttUrl, { clientId: username, username: unique('other-name'), password: 'pw' })).toBe(5);
    } finally {
      await other.close();
    }
  });

  it('counts authentication successes and failures in /metrics', async () => {
    const clientId = unique('counted');
    await api.post(AUTHN_USERS, { user_id: clientId, password: 'pw-counted' });
    const before = (await api.get('/metrics?aggregate=true')).body;
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('nobody'), username: 'nobody', password: 'x' })).toBe(5);
    const client = await connectClient(broker.mqttUrl, { clientId, username: clientId, password: 'pw-counted' });
    await client.endAsync();
    const after = (await api.get('/metrics?aggregate=true')).body;
    expect(after['authentication.failure']).toBe(before['authentication.failure'] + 1);
    expect(after['authentication.success']).toBe(before['authentication.success'] + 1);
  });

  it('lets a superuser skip authorization', async () => {
    const clientId = unique('root');
    const topic = `${unique('locked')}/t`;
    await createUser(api, clientId, 'pw', true);
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [{ topic: '#', permission: 'deny', action: 'all' }],
    });
    const client = await connectClient(broker.mqttUrl, { clientId, username: clientId, password: 'pw' });
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
