import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import {
  AUTHN_USERS,
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  startTestBroker,
  unique,
  waitFor,
  type BrokerApi,
} from './broker-helpers';

/**
 * Clients, kick, subscriptions on behalf, and the subscription and topic listings
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_subscriptions.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_topics.erl).
 */

let broker: RunningBroker;
let api: BrokerApi;
const PASSWORD = 'clients-test-pw';
const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$/;

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

async function device(options: { clientId?: string; username?: string; ws?: boolean; keepalive?: number } = {}): Promise<{ clientId: string; client: MqttClient }> {
  const clientId = options.clientId ?? unique('dev');
  const username = options.username ?? clientId;
  // The broker is set up as `device-ops emqx setup` leaves it: users are keyed by client id.
  await api.post(AUTHN_USERS, { user_id: clientId, password: PASSWORD });
  const client = await connectClient(options.ws ? broker.wsUrl : broker.mqttUrl, {
    clientId,
    username,
    password: PASSWORD,
    keepalive: options.keepalive ?? 30,
  });
  return { clientId, client };
}

describe('GET /clients/{clientid}', () => {
  it('returns the EMQX client object for a connected client', async () => {
    const { clientId, client } = await device({ keepalive: 42 });
    const response = await api.get(`/clients/${clientId}`);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      clientid: clientId,
      username: clientId,
      node: 'emqx@127.0.0.1',
      connected: true,
      ip_address: '127.0.0.1',
      proto_name: 'MQTT',
      proto_ver: 4,
      keepalive: 42,
      clean_start: true,
      expiry_interval: 0,
      is_bridge: false,
      mountpoint: null,
      listener: 'tcp:default',
      subscriptions_cnt: 0,
      inflight_cnt: 0,
      mqueue_len: 0,
      recv_msg: 0,
      send_msg: 0,
    });
    expect(response.body.connected_at).toMatch(RFC3339_MS);
    expect(response.body.created_at).toMatch(RFC3339_MS);
    expect(response.body).not.toHaveProperty('disconnected_at');
    expect(typeof response.body.port).toBe('number');
    await client.endAsync();
  });

  it('finds, subscribes and kicks clients whose ids need URL encoding', async () => {
    const clientId = `${unique('site')}/gate 1`;
    const { client } = await device({ clientId, username: unique('gate') });
    const path = `/clients/${encodeURIComponent(clientId)}`;
    expect((await api.get(path)).body.clientid).toBe(clientId);
    expect((await api.post(`${path}/subscribe`, { topic: 'gates/cmd' })).status).toBe(200);
    expect((await api.delete(path)).status).toBe(204);
    await waitFor(() => !client.connected, { what: 'the kick' });
  });

  it('reports the WebSocket listener for MQTT over WebSocket on /mqtt', async () => {
    const { clientId, client } = await device({ ws: true });
    expect((await api.get(`/clients/${clientId}`)).body.listener).toBe('ws:default');
    await client.endAsync();
  });

  it('answers 404 CLIENTID_NOT_FOUND for an unknown or disconnected client', async () => {
    const { clientId, client } = await device();
    await client.endAsync();
    await waitFor(async () => (await api.get(`/clients/${clientId}`)).status === 404, { what: 'the client to be gone' });
    const response = await api.get(`/clients/${clientId}`);
    expect(response.body).toEqual({ code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
  });

  it('counts messages received from and sent to the client', async () => {
    const { clientId, client } = await device();
    const topic = `${unique('echo')}/t`;
    await client.subscribeAsync(topic, { qos: 1 });
    const received = collectMessages(client);
    await client.publishAsync(topic, 'ping', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the echo' });
    await waitFor(async () => (await api.get(`/clients/${clientId}`)).body.send_msg === 1, { what: 'send_msg' });
    const info = (await api.get(`/clients/${clientId}`)).body;
    expect(info.recv_msg).toBe(1);
    expect(info.subscriptions_cnt).toBe(1);
    await client.endAsync();
  });
});

describe('GET /clients', () => {
  it('filters by repeated clientid, username, like_clientid and conn_state, with pagination', async () => {
    const tag = unique('fleet');
    const a = await device({ clientId: `${tag}-a` });
    const b = await device({ clientId: `${tag}-b` });
    const c = await device({ clientId: `${tag}-c` });
    try {
      const byIds = await api.get(`/clients?clientid=${tag}-a&clientid=${tag}-c`);
      expect(byIds.status).toBe(200);
      expect(byIds.body.data.map((x: { clientid: string }) => x.clientid).sort()).toEqual([`${tag}-a`, `${tag}-c`]);
      expect(byIds.body.meta).toEqual({ page: 1, limit: 100, count: 2, hasnext: false });

      const byUsername = await api.get(`/clients?username=${tag}-b`);
      expect(byUsername.body.data.map((x: { clientid: string }) => x.clientid)).toEqual([`${tag}-b`]);

      const like = await api.get(`/clients?like_clientid=${tag}&limit=2`);
      expect(like.body.data).toHaveLength(2);
      expect(like.body.meta).toEqual({ page: 1, limit: 2, hasnext: true });
      const likePage2 = await api.get(`/clients?like_clientid=${tag}&limit=2&page=2`);
      expect(likePage2.body.data).toHaveLength(1);
      expect(likePage2.body.meta.hasnext).toBe(false);

      expect((await api.get(`/clients?like_clientid=${tag}&conn_state=disconnected`)).body.data).toEqual([]);
      expect((await api.get(`/clients?like_clientid=${tag}&conn_state=connected`)).body.data).toHaveLength(3);

      const fields = await api.get(`/clients?clientid=${tag}-a&fields=clientid,connected`);
      expect(fields.body.data).toEqual([{ clientid: `${tag}-a`, connected: true }]);
    } finally {
      await Promise.all([a.client.endAsync(), b.client.endAsync(), c.client.endAsync()]);
    }
  });
});

describe('kick', () => {
  it('DELETE /clients/{id} disconnects the client for real (204), then 404', async () => {
    const { clientId, client } = await device();
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const response = await api.delete(`/clients/${clientId}`);
    expect(response.status).toBe(204);
    await closed;
    expect(client.connected).toBe(false);
    expect((await api.get(`/clients/${clientId}`)).status).toBe(404);
    const again = await api.delete(`/clients/${clientId}`);
    expect(again.status).toBe(404);
    expect(again.body).toEqual({ code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
  });

  it('POST /clients/kickout/bulk kicks the listed clients and ignores unknown ids', async () => {
    const a = await device();
    const b = await device();
    const response = await api.post('/clients/kickout/bulk', [a.clientId, b.clientId, unique('ghost')]);
    expect(response.status).toBe(204);
    await waitFor(() => !a.client.connected && !b.client.connected, { what: 'both clients to be disconnected' });
    expect((await api.get(`/clients?clientid=${a.clientId}&clientid=${b.clientId}`)).body.data).toEqual([]);
  });
});

describe('subscriptions on behalf of a client', () => {
  it('delivers to a client that never subscribed after POST /clients/{id}/subscribe', async () => {
    const { clientId, client } = await device();
    const topic = `${unique('proxy')}/cmd`;
    const received = collectMessages(client);
    const response = await api.post(`/clients/${clientId}/subscribe`, { topic, qos: 1 });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ clientid: clientId, topic, qos: 1, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' });
    const subscriptions = await api.get(`/clients/${clientId}/subscriptions`);
    expect(subscriptions.body).toEqual([
      { node: 'emqx@127.0.0.1', topic, clientid: clientId, qos: 1, nl: 0, rap: 0, rh: 0, durable: false },
    ]);
    const published = await api.post('/publish', { topic, payload: 'do it', qos: 1 });
    expect(published.status).toBe(200);
    await waitFor(() => received.some((m) => m.topic === topic && m.payload === 'do it'), { what: 'the proxied message' });
    await client.endAsync();
  });

  it('subscribes in bulk (200 array) and unsubscribes singly and in bulk (204)', async () => {
    const { clientId, client } = await device();
    const base = unique('bulk');
    const bulk = await api.post(`/clients/${clientId}/subscribe/bulk`, [{ topic: `${base}/a` }, { topic: `${base}/b`, qos: 2 }, { topic: `${base}/c` }]);
    expect(bulk.status).toBe(200);
    expect(bulk.body).toEqual([
      { clientid: clientId, topic: `${base}/a`, qos: 0, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' },
      { clientid: clientId, topic: `${base}/b`, qos: 2, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' },
      { clientid: clientId, topic: `${base}/c`, qos: 0, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' },
    ]);
    expect((await api.post(`/clients/${clientId}/unsubscribe`, { topic: `${base}/a` })).status).toBe(204);
    expect((await api.post(`/clients/${clientId}/unsubscribe/bulk`, [{ topic: `${base}/b` }])).status).toBe(204);
    const remaining = await api.get(`/clients/${clientId}/subscriptions`);
    expect(remaining.body.map((s: { topic: string }) => s.topic)).toEqual([`${base}/c`]);
    expect((await api.post('/publish', { topic: `${base}/a`, payload: 'x' })).status).toBe(202);
    await client.endAsync();
  });

  it('answers 404 CLIENTID_NOT_FOUND for a client without a live session, and 400 for a bad body', async () => {
    const ghost = unique('ghost');
    for (const [path, body] of [
      [`/clients/${ghost}/subscribe`, { topic: 't' }],
      [`/clients/${ghost}/subscribe/bulk`, [{ topic: 't' }]],
      [`/clients/${ghost}/unsubscribe`, { topic: 't' }],
      [`/clients/${ghost}/unsubscribe/bulk`, [{ topic: 't' }]],
    ] as const) {
      const response = await api.post(path, body);
      expect(response.status, path).toBe(404);
      expect(response.body).toEqual({ code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
    }
    expect((await api.get(`/clients/${ghost}/subscriptions`)).status).toBe(404);
    expect((await api.post(`/clients/${ghost}/subscribe`, { qos: 1 })).status).toBe(400);
  });

  it('grants proxy subscriptions the ACL denies, as EMQX does (see test/conformance/clients.test.ts)', async () => {
    const { clientId, client } = await device();
    const topic = `${unique('forbidden')}/t`;
    await api.put(`${AUTHZ_RULES}/clients/${clientId}`, { clientid: clientId, rules: [{ topic, permission: 'deny', action: 'subscribe' }] });
    expect((await api.post(`/clients/${clientId}/subscribe`, { topic })).status).toBe(200);
    expect((await api.get(`/clients/${clientId}/subscriptions`)).body.map((s: { topic: string }) => s.topic)).toEqual([topic]);
    await client.endAsync();
  });
});

describe('GET /subscriptions and GET /topics', () => {
  it('lists subscriptions with data/meta and filters clientid, topic, qos and match_topic', async () => {
    const base = unique('subs');
    const a = await device();
    const b = await device();
    await a.client.subscribeAsync(`${base}/+/temp`, { qos: 1 });
    await b.client.subscribeAsync(`${base}/room1/temp`, { qos: 0 });
    try {
      const byClient = await api.get(`/subscriptions?clientid=${a.clientId}`);
      expect(byClient.status).toBe(200);
      expect(byClient.body.data).toEqual([
        { node: 'emqx@127.0.0.1', topic: `${base}/+/temp`, clientid: a.clientId, qos: 1, nl: 0, rap: 0, rh: 0, durable: false },
      ]);
      expect(byClient.body.meta).toEqual({ page: 1, limit: 100, count: 1, hasnext: false });
      const byTopic = await api.get(`/subscriptions?topic=${encodeURIComponent(`${base}/room1/temp`)}`);
      expect(byTopic.body.data.map((s: { clientid: string }) => s.clientid)).toEqual([b.clientId]);
      const byQos = await api.get(`/subscriptions?qos=1&clientid=${b.clientId}`);
      expect(byQos.body.data).toEqual([]);
      const matching = await api.get(`/subscriptions?match_topic=${encodeURIComponent(`${base}/room1/temp`)}`);
      expect(matching.body.data.map((s: { clientid: string }) => s.clientid).sort()).toEqual([a.clientId, b.clientId].sort());
      expect(matching.body.meta).not.toHaveProperty('count');

      const topics = await api.get('/topics?limit=10000');
      expect(topics.status).toBe(200);
      const filters = topics.body.data.filter((t: { topic: string }) => t.topic.startsWith(base));
      expect(filters).toEqual(
        expect.arrayContaining([
          { topic: `${base}/+/temp`, node: 'emqx@127.0.0.1' },
          { topic: `${base}/room1/temp`, node: 'emqx@127.0.0.1' },
        ]),
      );
      expect(filters).toHaveLength(2);
      const one = await api.get(`/topics?topic=${encodeURIComponent(`${base}/+/temp`)}`);
      expect(one.body.data).toEqual([{ topic: `${base}/+/temp`, node: 'emqx@127.0.0.1' }]);
      expect((await api.get(`/topics/${encodeURIComponent(`${unique('none')}/x`)}`)).body.code).toBe('TOPIC_NOT_FOUND');
    } finally {
      await Promise.all([a.client.endAsync(), b.client.endAsync()]);
    }
  });

  it('drops a clean session from the listings when it disconnects', async () => {
    const base = unique('gone');
    const { clientId, client } = await device();
    await client.subscribeAsync(`${base}/x`, { qos: 0 });
    expect((await api.get(`/subscriptions?clientid=${clientId}`)).body.data).toHaveLength(1);
    await client.endAsync();
    await waitFor(async () => (await api.get(`/subscriptions?clientid=${clientId}`)).body.data.length === 0, {
      what: 'the subscription to go',
    });
    expect((await api.get(`/topics?topic=${base}/x`)).body.data).toEqual([]);
  });
});
