import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import {
  AUTHN_USERS,
  connectClient,
  rawConnect,
  startTestBroker,
  unique,
  waitFor,
  WebhookReceiver,
  wireWebhook,
  type BrokerApi,
  type ReceivedRequest,
} from './broker-helpers';

/**
 * Connectors, actions and rules (docs/emqx-setup.md), the event bodies they deliver
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl), and webhook
 * delivery semantics: retries on 429/503/connection errors, permanent failures, faults.
 */

let broker: RunningBroker;
let api: BrokerApi;
let events: WebhookReceiver;
const PASSWORD = 'rules-test-pw';

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
  events = await WebhookReceiver.start();
  await wireWebhook(api, {
    name: 'presence',
    receiverUrl: events.url,
    from: ['$events/client_connected', '$events/client_disconnected', '$events/session_subscribed', '$events/session_unsubscribed'],
    connectorHeaders: { 'x-from-connector': 'c', 'x-overridden': 'connector' },
    actionParameters: { headers: { 'x-overridden': 'action', authorization: 'Bearer test-token' } },
  });
});

afterAll(async () => {
  await broker.close();
  await events.close();
});

async function deviceOptions(clientId: string): Promise<{ clientId: string; username: string; password: string }> {
  await api.post(AUTHN_USERS, { user_id: clientId, password: PASSWORD });
  return { clientId, username: clientId, password: PASSWORD };
}

async function disconnectEvent(clientId: string): Promise<ReceivedRequest> {
  return waitFor(() => events.events('client.disconnected', clientId)[0], { what: `the disconnect event of ${clientId}` });
}

describe('connectors API', () => {
  it('creates (201), lists, reads, updates and deletes an HTTP connector', async () => {
    const name = unique('conn').replace(/-/g, '_');
    const created = await api.post('/connectors', { type: 'http', name, url: 'http://127.0.0.1:9/base', headers: { a: 'b' }, pool_size: 4 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ type: 'http', name, url: 'http://127.0.0.1:9/base', headers: { a: 'b' }, pool_size: 4, status: 'connected' });
    const duplicate = await api.post('/connectors', { type: 'http', name, url: 'http://127.0.0.1:9' });
    expect(duplicate.status).toBe(400);
    expect(duplicate.body.code).toBe('ALREADY_EXISTS');
    expect((await api.get('/connectors')).body.map((c: { name: string }) => c.name)).toContain(name);
    expect((await api.get(`/connectors/http:${name}`)).body.url).toBe('http://127.0.0.1:9/base');
    const updated = await api.put(`/connectors/http:${name}`, { url: 'http://127.0.0.1:9/other' });
    expect(updated.status).toBe(200);
    expect(updated.body.url).toBe('http://127.0.0.1:9/other');
    expect((await api.post('/connectors', { type: 'http', name: unique('c'), url: 'not a url' })).status).toBe(400);
    expect((await api.delete(`/connectors/http:${name}`)).status).toBe(204);
    const missing = await api.get(`/connectors/http:${name}`);
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('NOT_FOUND');
  });
});

describe('actions API', () => {
  it('creates (201), reads, updates, reports metrics and guards deletion while a rule uses it', async () => {
    const name = unique('act');
    await api.post('/connectors', { type: 'http', name, url: 'http://127.0.0.1:9' });
    const orphan = await api.post('/actions', { type: 'http', name: unique('orphan'), connector: unique('none'), parameters: {} });
    expect(orphan.status).toBe(400);
    const created = await api.post('/actions', { type: 'http', name, connector: name, parameters: { path: '/p', method: 'post', max_retries: 3 } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ type: 'http', name, connector: name, parameters: { path: '/p', method: 'post', max_retries: 3 } });
    expect((await api.post('/actions', { type: 'http', name, connector: name })).body.code).toBe('ALREADY_EXISTS');
    expect((await api.get('/actions')).body.map((a: { name: string }) => a.name)).toContain(name);
    const updated = await api.put(`/actions/http:${name}`, { connector: name, parameters: { path: '/q' } });
    expect(updated.status).toBe(200);
    expect(updated.body.parameters.path).toBe('/q');
    const metrics = await api.get(`/actions/http:${name}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.body.metrics).toMatchObject({ matched: 0, success: 0, failed: 0, dropped: 0, retried: 0 });
    expect(metrics.body.node_metrics[0].node).toBe('emqx@127.0.0.1');

    await api.post('/rules', { id: name, sql: 'SELECT * FROM "x/y"', actions: [`http:${name}`] });
    expect((await api.delete(`/connectors/http:${name}`)).status).toBe(400);
    expect((await api.delete(`/actions/http:${name}`)).status).toBe(400);
    expect((await api.delete(`/actions/http:${name}?also_delete_dep_actions=true`)).status).toBe(204);
    expect((await api.get(`/rules/${name}`)).body.actions).toEqual([]);
    expect((await api.get(`/actions/http:${name}`)).status).toBe(404);
  });
});

describe('rules API', () => {
  it('creates (201) with the parsed FROM list, lists with data/meta, updates and deletes', async () => {
    const id = unique('rule');
    const created = await api.post('/rules', {
      id,
      sql: 'SELECT * FROM "$events/client_connected", "devices/+/up" WHERE clientid = \'x\'',
      actions: [],
      description: 'test rule',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, enable: true, actions: [], description: 'test rule', from: ['$events/client_connected', 'devices/+/up'] });
    expect(typeof created.body.created_at).toBe('string');
    const duplicate = await api.post('/rules', { id, sql: 'SELECT * FROM "t"', actions: [] });
    expect(duplicate.status).toBe(400);
    expect(duplicate.body).toEqual({ code: 'BAD_REQUEST', message: 'rule id already exists' });
    const listed = await api.get(`/rules?like_id=${id}`);
    expect(listed.body.data.map((r: { id: string }) => r.id)).toEqual([id]);
    expect(listed.body.meta).toMatchObject({ page: 1, limit: 100, hasnext: false });
    const updated = await api.put(`/rules/${id}`, { enable: false });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ id, enable: false, from: ['$events/client_connected', 'devices/+/up'] });
    expect((await api.delete(`/rules/${id}`)).status).toBe(204);
    const missing = await api.get(`/rules/${id}`);
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('NOT_FOUND');
  });

  it('generates an id when none is given and rejects SQL it cannot run', async () => {
    const generated = await api.post('/rules', { sql: 'select * from "a/b"', actions: [] });
    expect(generated.status).toBe(201);
    expect(typeof generated.body.id).toBe('string');
    await api.delete(`/rules/${generated.body.id}`);
    for (const sql of ['SELECT clientid FROM "t"', 'DELETE FROM t', 'SELECT * FROM "a/#/b"']) {
      const response = await api.post('/rules', { sql, actions: [] });
      expect(response.status, sql).toBe(400);
      expect(response.body.code).toBe('BAD_REQUEST');
    }
  });
});

describe('webhook events', () => {
  it('sends client.connected with EMQX fields, merged headers and a JSON body', async () => {
    const options = await deviceOptions(unique('ev'));
    const client = await connectClient(broker.mqttUrl, { ...options, keepalive: 25 });
    const request = await waitFor(() => events.events('client.connected', options.clientId)[0], { what: 'client.connected' });
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/emqx/events');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['x-from-connector']).toBe('c');
    expect(request.headers['x-overridden']).toBe('action');
    expect(request.headers.authorization).toBe('Bearer test-token');
    const body = request.body;
    expect(body).toMatchObject({
      event: 'client.connected',
      node: 'emqx@127.0.0.1',
      metadata: { rule_id: 'presence' },
      clientid: options.clientId,
      username: options.username,
      mountpoint: 'undefined',
      sockname: `127.0.0.1:${broker.mqttPort}`,
      proto_name: 'MQTT',
      proto_ver: 4,
      keepalive: 25,
      clean_start: true,
      expiry_interval: 0,
      is_bridge: false,
    });
    expect(body.peername).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof body.timestamp).toBe('number');
    expect(typeof body.connected_at).toBe('number');
    expect(typeof body.receive_maximum).toBe('number');
    expect(typeof body.conn_props).toBe('object');
    await client.endAsync();
    const disconnected = await disconnectEvent(options.clientId);
    expect(disconnected.body).toMatchObject({
      event: 'client.disconnected',
      reason: 'normal',
      clientid: options.clientId,
      username: options.username,
      peername: body.peername,
      sockname: body.sockname,
      proto_name: 'MQTT',
      proto_ver: 4,
      connected_at: body.connected_at,
    });
    expect(disconnected.body.disconnected_at).toBeGreaterThanOrEqual(body.connected_at as number);
    expect(typeof disconnected.body.disconn_props).toBe('object');
  });

  it('sends username "undefined" for a client without a username', async () => {
    const { broker: open, api: openApi } = await startTestBroker({ authenticationEnabled: false });
    const receiver = await WebhookReceiver.start();
    try {
      await wireWebhook(openApi, { name: 'anon', receiverUrl: receiver.url, from: ['$events/client_connected'] });
      const clientId = unique('anon');
      const client = await connectClient(open.mqttUrl, { clientId });
      const request = await waitFor(() => receiver.events('client.connected', clientId)[0], { what: 'client.connected' });
      expect(request.body.username).toBe('undefined');
      await client.endAsync();
    } finally {
      await open.close();
      await receiver.close();
    }
  });

  it('reports reason kicked for a REST kick', async () => {
    const options = await deviceOptions(unique('kick'));
    await connectClient(broker.mqttUrl, options);
    expect((await api.delete(`/clients/${options.clientId}`)).status).toBe(204);
    expect((await disconnectEvent(options.clientId)).body.reason).toBe('kicked');
  });

  it('reports reason takenover when a new connection resumes the session (clean_start=false)', async () => {
    const options = await deviceOptions(unique('take'));
    const first = await connectClient(broker.mqttUrl, options);
    const firstConnected = await waitFor(() => events.events('client.connected', options.clientId)[0], { what: 'first connect' });
    const second = await connectClient(broker.mqttUrl, { ...options, clean: false });
    const disconnected = await disconnectEvent(options.clientId);
    expect(disconnected.body.reason).toBe('takenover');
    expect(disconnected.body.connected_at).toBe(firstConnected.body.connected_at);
    await waitFor(() => !first.connected, { what: 'the first connection to be closed' });
    await second.endAsync();
  });

  it('reports reason discarded when a new clean connection replaces the session', async () => {
    const options = await deviceOptions(unique('disc'));
    await connectClient(broker.mqttUrl, options);
    const second = await connectClient(broker.mqttUrl, { ...options, clean: true });
    expect((await disconnectEvent(options.clientId)).body.reason).toBe('discarded');
    await second.endAsync();
  });

  it('reports reason tcp_closed when the socket closes without DISCONNECT', async () => {
    const options = await deviceOptions(unique('tcp'));
    const socket = await rawConnect(broker.mqttPort, { ...options, keepalive: 60 });
    await waitFor(() => events.events('client.connected', options.clientId)[0], { what: 'the connect' });
    socket.destroy();
    expect((await disconnectEvent(options.clientId)).body.reason).toBe('tcp_closed');
  });

  it('reports reason keepalive_timeout when the client goes silent', async () => {
    const options = await deviceOptions(unique('idle'));
    const socket = await rawConnect(broker.mqttPort, { ...options, keepalive: 1 });
    try {
      expect((await disconnectEvent(options.clientId)).body.reason).toBe('keepalive_timeout');
    } finally {
      socket.destroy();
    }
  });

  it('sends session.subscribed and session.unsubscribed, including for REST subscriptions', async () => {
    const options = await deviceOptions(unique('subev'));
    const client = await connectClient(broker.mqttUrl, options);
    const topic = `${unique('t')}/x`;
    await client.subscribeAsync(topic, { qos: 1 });
    const subscribed = await waitFor(() => events.events('session.subscribed', options.clientId)[0], { what: 'session.subscribed' });
    expect(subscribed.body).toMatchObject({ event: 'session.subscribed', clientid: options.clientId, username: options.username, topic, qos: 1, peerhost: '127.0.0.1' });
    expect(subscribed.body.peername).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof subscribed.body.sub_props).toBe('object');
    await client.unsubscribeAsync(topic);
    const unsubscribed = await waitFor(() => events.events('session.unsubscribed', options.clientId)[0], { what: 'session.unsubscribed' });
    expect(unsubscribed.body).toMatchObject({ event: 'session.unsubscribed', clientid: options.clientId, topic, qos: 1 });
    expect(typeof unsubscribed.body.unsub_props).toBe('object');
    const proxied = `${unique('t')}/proxy`;
    await api.post(`/clients/${options.clientId}/subscribe`, { topic: proxied, qos: 0 });
    await waitFor(() => events.events('session.subscribed', options.clientId).some((r) => r.body.topic === proxied), { what: 'the proxy subscription event' });
    await client.endAsync();
    await disconnectEvent(options.clientId);
    expect(events.events('session.unsubscribed', options.clientId)).toHaveLength(1);
  });

  it('sends message.publish for topics matching a rule filter, from clients and from the REST API', async () => {
    const receiver = await WebhookReceiver.start();
    const base = unique('msg');
    try {
      await wireWebhook(api, { name: unique('msgs'), receiverUrl: receiver.url, from: [`${base}/+/up`] });
      const options = await deviceOptions(unique('pub'));
      const client = await connectClient(broker.mqttUrl, options);
      await client.publishAsync(`${base}/d1/up`, 'reading=1', { qos: 1 });
      await client.publishAsync(`${base}/d1/down`, 'not matched', { qos: 1 });
      const fromClient = await waitFor(() => receiver.events('message.publish', options.clientId)[0], { what: 'message.publish' });
      expect(fromClient.body).toMatchObject({
        event: 'message.publish',
        clientid: options.clientId,
        username: options.username,
        payload: 'reading=1',
        peerhost: '127.0.0.1',
        topic: `${base}/d1/up`,
        qos: 1,
        flags: { retain: false, dup: false },
      });
      expect(fromClient.body.id).toMatch(/^[0-9A-F]{32}$/);
      expect(typeof fromClient.body.publish_received_at).toBe('number');
      expect(typeof fromClient.body.pub_props).toBe('object');

      await client.subscribeAsync(`${base}/d2/up`, { qos: 0 });
      const published = await api.post('/publish', { topic: `${base}/d2/up`, payload: 'from api', retain: true });
      expect(published.status).toBe(200);
      const fromApi = await waitFor(() => receiver.events('message.publish', 'http_api')[0], { what: 'the API message event' });
      expect(fromApi.body).toMatchObject({ id: published.body.id, payload: 'from api', topic: `${base}/d2/up`, flags: { retain: true } });
      expect(receiver.requests.filter((r) => r.body.topic === `${base}/d1/down`)).toEqual([]);
      await client.endAsync();
    } finally {
      await receiver.close();
    }
  });
});

describe('webhook delivery', () => {
  /** A rule on a topic of its own, so only this test's REST publishes reach its receiver. */
  async function isolatedWebhook(actionParameters: Record<string, unknown> = {}): Promise<{ receiver: WebhookReceiver; topic: string; actionId: string }> {
    const receiver = await WebhookReceiver.start();
    const topic = `${unique('hook')}/t`;
    const { actionId } = await wireWebhook(api, { name: unique('hook'), receiverUrl: receiver.url, from: [topic], actionParameters });
    return { receiver, topic, actionId };
  }

  it('retries 503 responses and succeeds once the receiver recovers', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook({ max_retries: 2 });
    try {
      receiver.respond = (_request, attempt) => (attempt <= 2 ? 503 : 200);
      await api.post('/publish', { topic, payload: 'eventually' });
      await waitFor(() => broker.webhookMetrics()[actionId]?.success === 1, { what: 'the successful delivery' });
      expect(receiver.requests).toHaveLength(3);
      expect(broker.webhookMetrics()[actionId]).toMatchObject({ matched: 1, success: 1, failed: 0, retried: 2, 'retried.success': 1 });
      const viaApi = await api.get(`/actions/${actionId}/metrics`);
      expect(viaApi.body.metrics).toMatchObject({ success: 1, retried: 2 });
    } finally {
      await receiver.close();
    }
  });

  it('gives up after max_retries on 429 and counts the delivery as failed', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook({ max_retries: 1 });
    try {
      receiver.respond = () => 429;
      await api.post('/publish', { topic, payload: 'throttled' });
      await waitFor(() => broker.webhookMetrics()[actionId]?.failed === 1, { what: 'the failed delivery' });
      expect(receiver.requests).toHaveLength(2);
      expect(broker.webhookMetrics()[actionId]).toMatchObject({ success: 0, failed: 1, retried: 1, 'retried.failed': 1 });
    } finally {
      await receiver.close();
    }
  });

  it('does not retry other error statuses', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook({ max_retries: 3 });
    try {
      receiver.respond = () => 400;
      await api.post('/publish', { topic, payload: 'rejected' });
      await waitFor(() => broker.webhookMetrics()[actionId]?.failed === 1, { what: 'the failed delivery' });
      expect(receiver.requests).toHaveLength(1);
      expect(broker.webhookMetrics()[actionId]?.retried).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it('retries connection errors', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook({ max_retries: 2 });
    await receiver.close();
    await api.post('/publish', { topic, payload: 'nobody listening' });
    await waitFor(() => broker.webhookMetrics()[actionId]?.failed === 1, { what: 'the failed delivery' });
    expect(broker.webhookMetrics()[actionId]?.retried).toBe(2);
  });

  it('drops deliveries at the configured rate and counts them', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook();
    try {
      broker.faults.set({ webhookDropRate: 1 });
      for (let i = 0; i < 5; i++) await api.post('/publish', { topic, payload: `dropped ${i}` });
      await waitFor(() => broker.webhookMetrics()[actionId]?.dropped === 5, { what: 'five drops' });
      broker.faults.reset();
      await api.post('/publish', { topic, payload: 'marker' });
      await waitFor(() => receiver.requests.some((r) => r.body.payload === 'marker'), { what: 'the marker' });
      expect(receiver.requests.map((r) => r.body.payload)).toEqual(['marker']);
    } finally {
      broker.faults.reset();
      await receiver.close();
    }
  });

  it('duplicates deliveries at the configured rate', async () => {
    const { receiver, topic, actionId } = await isolatedWebhook();
    try {
      broker.faults.set({ webhookDuplicateRate: 1 });
      await api.post('/publish', { topic, payload: 'twice' });
      await waitFor(() => receiver.requests.length === 2, { what: 'two deliveries' });
      expect(receiver.requests[0]?.body).toEqual(receiver.requests[1]?.body);
      expect(broker.webhookMetrics()[actionId]).toMatchObject({ success: 2, duplicated: 1 });
    } finally {
      broker.faults.reset();
      await receiver.close();
    }
  });

  it('still delivers every event when reordering is on', async () => {
    const { receiver, topic } = await isolatedWebhook();
    try {
      broker.faults.set({ webhookReorder: true });
      const payloads = Array.from({ length: 20 }, (_, i) => `m${i}`);
      await api.post('/publish/bulk', payloads.map((payload) => ({ topic, payload })));
      await waitFor(() => receiver.requests.length === payloads.length, { what: 'all deliveries' });
      expect(receiver.requests.map((r) => r.body.payload).sort()).toEqual([...payloads].sort());
    } finally {
      broker.faults.reset();
      await receiver.close();
    }
  });
});
