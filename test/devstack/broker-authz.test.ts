import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import {
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  createUser,
  startTestBroker,
  subscribeGranted,
  unique,
  waitFor,
  type BrokerApi,
} from './broker-helpers';

/**
 * Authorization settings and sources, built-in database ACL rules, and their enforcement on real
 * MQTT traffic. EMQX sources:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authz/emqx_authz_api_settings.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authz/emqx_authz_api_sources.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl and
 * the stock https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/etc/acl.conf.
 */

let broker: RunningBroker;
let api: BrokerApi;
const PASSWORD = 'acl-test-pw';

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

async function device(name = unique('dev')): Promise<{ clientId: string; client: MqttClient }> {
  await createUser(api, name, PASSWORD);
  const client = await connectClient(broker.mqttUrl, { clientId: name, username: name, password: PASSWORD });
  return { clientId: name, client };
}

describe('client rules API', () => {
  it('creates with POST (204), reads one, and lists with like_clientid (no count)', async () => {
    const clientid = unique('rc');
    const created = await api.post(`${AUTHZ_RULES}/clients`, [
      { clientid, rules: [{ topic: 'a/#', permission: 'allow', action: 'publish' }] },
    ]);
    expect(created.status).toBe(204);
    const one = await api.get(`${AUTHZ_RULES}/clients/${clientid}`);
    expect(one.status).toBe(200);
    expect(one.body).toEqual({
      clientid,
      rules: [{ topic: 'a/#', permission: 'allow', action: 'publish', qos: [0, 1, 2], retain: 'all' }],
    });
    const listed = await api.get(`${AUTHZ_RULES}/clients?like_clientid=${clientid}`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual([one.body]);
    expect(listed.body.meta).toEqual({ page: 1, limit: 100, hasnext: false });
    const all = await api.get(`${AUTHZ_RULES}/clients`);
    expect(all.body.meta.count).toBe(all.body.data.length);
  });

  it('answers 409 ALREADY_EXISTS and writes nothing when any listed client already has rules', async () => {
    const existing = unique('rc');
    const fresh = unique('rc');
    await api.post(`${AUTHZ_RULES}/clients`, [{ clientid: existing, rules: [] }]);
    const response = await api.post(`${AUTHZ_RULES}/clients`, [
      { clientid: fresh, rules: [{ topic: 'x', permission: 'deny', action: 'all' }] },
      { clientid: existing, rules: [] },
    ]);
    expect(response.status).toBe(409);
    expect(response.body).toEqual({ code: 'ALREADY_EXISTS', message: `Client '${existing}' already exist` });
    expect((await api.get(`${AUTHZ_RULES}/clients/${fresh}`)).status).toBe(404);
  });

  it('rejects bad rules and more than 100 rules with 400', async () => {
    const badPermission = await api.post(`${AUTHZ_RULES}/clients`, [
      { clientid: unique('rc'), rules: [{ topic: 't', permission: 'maybe', action: 'publish' }] },
    ]);
    expect(badPermission.status).toBe(400);
    expect(badPermission.body.code).toBe('BAD_REQUEST');
    const tooMany = Array.from({ length: 101 }, (_, i) => ({ topic: `t/${i}`, permission: 'allow', action: 'all' }));
    const response = await api.post(`${AUTHZ_RULES}/clients`, [{ clientid: 'crowded', rules: tooMany }]);
    expect(response.status).toBe(400);
    expect(response.body.message).toBe("The rules length of Client 'crowded' exceeds the maximum limit.");
  });

  it('replaces with PUT (204), checks the body clientid, and deletes (204 then 404)', async () => {
    const clientid = unique('rc');
    const put = await api.put(`${AUTHZ_RULES}/clients/${clientid}`, {
      clientid,
      rules: [{ topic: 'b', permission: 'deny', action: 'subscribe', qos: [1] }],
    });
    expect(put.status).toBe(204);
    expect((await api.get(`${AUTHZ_RULES}/clients/${clientid}`)).body.rules).toEqual([
      { topic: 'b', permission: 'deny', action: 'subscribe', qos: [1], retain: 'all' },
    ]);
    const mismatch = await api.put(`${AUTHZ_RULES}/clients/${clientid}`, { clientid: 'someone-else', rules: [] });
    expect(mismatch.status).toBe(400);
    expect((await api.delete(`${AUTHZ_RULES}/clients/${clientid}`)).status).toBe(204);
    const missing = await api.get(`${AUTHZ_RULES}/clients/${clientid}`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ code: 'NOT_FOUND', message: 'Not Found' });
    const deleteAgain = await api.delete(`${AUTHZ_RULES}/clients/${clientid}`);
    expect(deleteAgain.status).toBe(404);
    expect(deleteAgain.body).toEqual({ code: 'NOT_FOUND', message: 'ClientID Not Found' });
  });
});

describe('user and all rules API', () => {
  it('handles user rules like client rules, with username and like_username', async () => {
    const username = unique('ru');
    expect((await api.post(`${AUTHZ_RULES}/users`, [{ username, rules: [] }])).status).toBe(204);
    const duplicate = await api.post(`${AUTHZ_RULES}/users`, [{ username, rules: [] }]);
    expect(duplicate.status).toBe(409);
    expect(duplicate.body).toEqual({ code: 'ALREADY_EXISTS', message: `User '${username}' already exist` });
    expect((await api.put(`${AUTHZ_RULES}/users/${username}`, { username, rules: [{ topic: 'u', permission: 'allow', action: 'all' }] })).status).toBe(204);
    const listed = await api.get(`${AUTHZ_RULES}/users?like_username=${username}`);
    expect(listed.body.data).toEqual([{ username, rules: [{ topic: 'u', permission: 'allow', action: 'all', qos: [0, 1, 2], retain: 'all' }] }]);
    expect((await api.delete(`${AUTHZ_RULES}/users/${username}`)).status).toBe(204);
    const deleteAgain = await api.delete(`${AUTHZ_RULES}/users/${username}`);
    expect(deleteAgain.body).toEqual({ code: 'NOT_FOUND', message: 'Username Not Found' });
  });

  it('replaces the rules for all with POST and clears them with DELETE', async () => {
    expect((await api.get(`${AUTHZ_RULES}/all`)).body).toEqual({ rules: [] });
    expect((await api.post(`${AUTHZ_RULES}/all`, { rules: [{ topic: 'nobody/#', permission: 'deny', action: 'all' }] })).status).toBe(204);
    expect((await api.get(`${AUTHZ_RULES}/all`)).body.rules).toHaveLength(1);
    expect((await api.delete(`${AUTHZ_RULES}/all`)).status).toBe(204);
    expect((await api.get(`${AUTHZ_RULES}/all`)).body).toEqual({ rules: [] });
  });
});

describe('authorization cache endpoints', () => {
  it('clears the whole cache and one connected client (404 CLIENTID_NOT_FOUND otherwise)', async () => {
    expect((await api.delete('/authorization/cache')).status).toBe(204);
    const { clientId, client } = await device();
    expect((await api.delete(`/clients/${clientId}/authorization/cache`)).status).toBe(204);
    const missing = await api.delete(`/clients/${unique('ghost')}/authorization/cache`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
    await client.endAsync();
  });
});

describe('enforcement on MQTT traffic', () => {
  it('drops a denied publish without disconnecting the publisher; subscribers never receive it', async () => {
    const base = unique('deny-pub');
    const publisher = await device();
    const subscriber = await device();
    await api.put(`${AUTHZ_RULES}/clients/${publisher.clientId}`, {
      clientid: publisher.clientId,
      rules: [{ topic: `${base}/secret`, permission: 'deny', action: 'publish' }],
    });
    const received = collectMessages(subscriber.client);
    await subscriber.client.subscribeAsync(`${base}/#`, { qos: 1 });
    const denialsBefore = (await api.get('/metrics?aggregate=true')).body['authorization.deny'] as number;
    await publisher.client.publishAsync(`${base}/secret`, 'must not arrive', { qos: 1 });
    await publisher.client.publishAsync(`${base}/open`, 'marker', { qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'marker'), { what: 'the marker message' });
    expect(received.map((m) => m.payload)).toEqual(['marker']);
    expect(publisher.client.connected).toBe(true);
    const metrics = (await api.get('/metrics?aggregate=true')).body;
    expect(metrics['authorization.deny']).toBe(denialsBefore + 1);
    await Promise.all([publisher.client.endAsync(), subscriber.client.endAsync()]);
  });

  it('answers a denied subscribe with SUBACK 128', async () => {
    const base = unique('deny-sub');
    const { clientId, client } = await device();
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [{ topic: `${base}/#`, permission: 'deny', action: 'subscribe' }],
    });
    const other = `${unique('other')}/y`;
    const granted = await subscribeGranted(client, { [`${base}/x`]: 1, [other]: 1 });
    expect(granted).toEqual({ [`${base}/x`]: 128, [other]: 1 });
    expect((await api.get(`/clients/${clientId}/subscriptions`)).body).toHaveLength(1);
    await client.endAsync();
  });

  it('renders ${clientid} in rules for all, with a final deny', async () => {
    const { clientId, client } = await device();
    const other = await device();
    const scope = unique('scope');
    await api.post(`${AUTHZ_RULES}/all`, {
      rules: [
        { topic: `${scope}/\${clientid}/#`, permission: 'allow', action: 'all' },
        { topic: `${scope}/#`, permission: 'deny', action: 'all' },
      ],
    });
    try {
      const own = `${scope}/${clientId}/cmd`;
      const foreign = `${scope}/${other.clientId}/cmd`;
      expect(await subscribeGranted(client, { [own]: 0, [foreign]: 0 })).toEqual({ [own]: 0, [foreign]: 128 });
    } finally {
      await api.delete(`${AUTHZ_RULES}/all`);
      await Promise.all([client.endAsync(), other.client.endAsync()]);
    }
  });

  it('renders ${username} in the rules of a client', async () => {
    const { clientId, client } = await device();
    const scope = unique('users');
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [
        { topic: `${scope}/\${username}/#`, permission: 'allow', action: 'subscribe' },
        { topic: `${scope}/#`, permission: 'deny', action: 'subscribe' },
      ],
    });
    const own = `${scope}/${clientId}/inbox`;
    const foreign = `${scope}/someone-else/inbox`;
    expect(await subscribeGranted(client, { [own]: 1, [foreign]: 1 })).toEqual({ [own]: 1, [foreign]: 128 });
    await client.endAsync();
  });

  it('checks client rules before user rules before rules for all, first match wins', async () => {
    const { clientId, client } = await device();
    const base = unique('order');
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [{ topic: `${base}/a`, permission: 'allow', action: 'subscribe' }],
    });
    await api.put(`${AUTHZ_RULES}/users/${clientId}`, {
      username: clientId,
      rules: [
        { topic: `${base}/a`, permission: 'deny', action: 'subscribe' },
        { topic: `${base}/b`, permission: 'deny', action: 'subscribe' },
      ],
    });
    expect(await subscribeGranted(client, { [`${base}/a`]: 0, [`${base}/b`]: 0 })).toEqual({ [`${base}/a`]: 0, [`${base}/b`]: 128 });
    await client.endAsync();
  });

  it('matches "eq " rules literally, and rule qos lists restrict the matched QoS', async () => {
    const { clientId, client } = await device();
    const base = unique('eq');
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [
        { topic: `eq ${base}/#`, permission: 'deny', action: 'subscribe' },
        { topic: `${base}/q/#`, permission: 'deny', action: 'subscribe', qos: [2] },
      ],
    });
    const granted = await subscribeGranted(client, { [`${base}/#`]: 0, [`${base}/x`]: 0, [`${base}/q/1`]: 2, [`${base}/q/2`]: 1 });
    expect(granted).toEqual({ [`${base}/#`]: 128, [`${base}/x`]: 0, [`${base}/q/1`]: 128, [`${base}/q/2`]: 1 });
    await client.endAsync();
  });

  it('applies authorization.no_match = deny when configured', async () => {
    const { broker: strict, api: strictApi } = await startTestBroker({ authzNoMatch: 'deny' });
    try {
      const name = unique('strict');
      await createUser(strictApi, name, PASSWORD);
      const client = await connectClient(strict.mqttUrl, { clientId: name, username: name, password: PASSWORD });
      expect(await subscribeGranted(client, { anything: 0 })).toEqual({ anything: 128 });
      await strictApi.put(`${AUTHZ_RULES}/clients/${name}`, { clientid: name, rules: [{ topic: 'anything', permission: 'allow', action: 'all' }] });
      expect(await subscribeGranted(client, { anything: 0 })).toEqual({ anything: 0 });
      await client.endAsync();
    } finally {
      await strict.close();
    }
  });
});

describe('authorization settings and sources', () => {
  it('starts stock with sources [file] and no_match allow; the file source is the stock acl.conf', async () => {
    const { broker: stock, api: stockApi } = await startTestBroker({ stock: true });
    try {
      expect((await stockApi.get('/authorization/settings')).body).toEqual({
        no_match: 'allow',
        deny_action: 'ignore',
        cache: { enable: true, max_size: 32, ttl: '1m', excludes: [] },
      });
      const sources = (await stockApi.get('/authorization/sources')).body.sources;
      expect(sources.map((s: { type: string }) => s.type)).toEqual(['file']);
      expect(sources[0].rules).toMatch(/\{allow, all\}\.$/);
      // is_configured_authz_source/2: no built_in_database source, no rules API.
      expect(await stockApi.get(`${AUTHZ_RULES}/clients/x`)).toMatchObject({ status: 404, body: { code: 'NOT_FOUND', message: 'Not found: built_in_database' } });
      expect((await stockApi.get('/authorization/sources/built_in_database')).body).toEqual({ code: 'NOT_FOUND', message: 'Not found: built_in_database' });
      // The stock acl.conf lets clients on 127.0.0.1 use every topic, '#' included (its second rule).
      const anyone = await connectClient(stock.mqttUrl, { clientId: unique('anyone') });
      expect(await subscribeGranted(anyone, { '#': 0, '$SYS/brokers': 0 })).toEqual({ '#': 0, '$SYS/brokers': 0 });
      await anyone.endAsync();
    } finally {
      await stock.close();
    }
  });

  it('prepends a new source, refuses a duplicate, moves, updates and deletes sources', async () => {
    const { broker: stock, api: stockApi } = await startTestBroker({ stock: true });
    try {
      expect((await stockApi.post('/authorization/sources', { type: 'built_in_database' })).status).toBe(204);
      const types = async (): Promise<[string, boolean][]> =>
        (await stockApi.get('/authorization/sources')).body.sources.map((s: { type: string; enable: boolean }) => [s.type, s.enable]);
      expect(await types()).toEqual([['built_in_database', true], ['file', true]]);
      expect((await stockApi.post('/authorization/sources', { type: 'built_in_database' })).status).toBe(400);
      expect((await stockApi.post('/authorization/sources/built_in_database/move', { position: 'rear' })).status).toBe(204);
      expect(await types()).toEqual([['file', true], ['built_in_database', true]]);
      expect((await stockApi.post('/authorization/sources/file/move', { position: 'after:built_in_database' })).status).toBe(204);
      expect(await types()).toEqual([['built_in_database', true], ['file', true]]);
      const file = (await stockApi.get('/authorization/sources/file')).body;
      expect((await stockApi.put('/authorization/sources/file', { ...file, enable: false })).status).toBe(204);
      expect((await stockApi.put('/authorization/sources/file', { type: 'built_in_database' })).body).toEqual({ code: 'BAD_REQUEST', message: 'Type mismatch' });
      expect(await types()).toEqual([['built_in_database', true], ['file', false]]);
      expect((await stockApi.delete('/authorization/sources/file')).status).toBe(204);
      expect(await types()).toEqual([['built_in_database', true]]);
      expect((await stockApi.delete('/authorization/sources/file')).status).toBe(404);
    } finally {
      await stock.close();
    }
  });

  it('PUT /authorization/settings changes no_match for the next check', async () => {
    const { broker: other, api: otherApi } = await startTestBroker();
    try {
      const name = unique('settings');
      await createUser(otherApi, name, PASSWORD);
      const client = await connectClient(other.mqttUrl, { clientId: name, username: name, password: PASSWORD });
      expect(await subscribeGranted(client, { anything: 0 })).toEqual({ anything: 0 });
      const settings = (await otherApi.get('/authorization/settings')).body;
      const put = await otherApi.put('/authorization/settings', { ...settings, no_match: 'deny' });
      expect(put).toMatchObject({ status: 200, body: { no_match: 'deny', deny_action: 'ignore' } });
      expect(await subscribeGranted(client, { anything: 0 })).toEqual({ anything: 128 });
      expect((await otherApi.put('/authorization/settings', { ...settings, no_match: 'maybe' })).status).toBe(400);
      await client.endAsync();
    } finally {
      await other.close();
    }
  });
});
