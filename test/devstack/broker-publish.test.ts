import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import {
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  createUser,
  startTestBroker,
  unique,
  waitFor,
  type BrokerApi,
} from './broker-helpers';

/**
 * `POST /publish`, `/publish/bulk`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl), and the
 * statistics endpoints
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_stats.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_metrics.erl).
 */

let broker: RunningBroker;
let api: BrokerApi;
const PASSWORD = 'publish-test-pw';
const MESSAGE_ID = /^[0-9A-F]{32}$/;

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

async function subscriber(filter: string, qos: 0 | 1 | 2 = 1): Promise<{ client: MqttClient; received: ReturnType<typeof collectMessages> }> {
  const name = unique('sub');
  await createUser(api, name, PASSWORD);
  const client = await connectClient(broker.mqttUrl, { clientId: name, username: name, password: PASSWORD });
  const received = collectMessages(client);
  await client.subscribeAsync(filter, { qos });
  return { client, received };
}

describe('POST /publish', () => {
  it('answers 200 with a 32-hex id and delivers when a subscriber matches', async () => {
    const topic = `${unique('pub')}/cmd`;
    const { client, received } = await subscriber(topic);
    const response = await api.post('/publish', { topic, payload: 'hello', qos: 1 });
    expect(response.status).toBe(200);
    expect(response.body.id).toMatch(MESSAGE_ID);
    await waitFor(() => received.some((m) => m.payload === 'hello'), { what: 'the message' });
    await client.endAsync();
  });

  it('answers 202 no_matching_subscribers when nobody subscribes, and still stores a retained message', async () => {
    const topic = `${unique('retained')}/state`;
    const retainedBefore = (await api.get('/stats?aggregate=true')).body['retained.count'] as number;
    const response = await api.post('/publish', { topic, payload: 'on', retain: true });
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ reason_code: 16, message: 'no_matching_subscribers' });
    const { client, received } = await subscriber(topic);
    await waitFor(() => received.some((m) => m.payload === 'on' && m.retain), { what: 'the retained message' });
    const stats = (await api.get('/stats?aggregate=true')).body;
    expect(stats['retained.count']).toBe(retainedBefore + 1);
    await client.endAsync();
  });

  it('decodes base64 payloads and rejects bad base64 with reason_code 131', async () => {
    const topic = `${unique('b64')}/bin`;
    const { client, received } = await subscriber(topic);
    const ok = await api.post('/publish', { topic, payload: Buffer.from('binary!').toString('base64'), payload_encoding: 'base64' });
    expect(ok.status).toBe(200);
    await waitFor(() => received.some((m) => m.payload === 'binary!'), { what: 'the decoded payload' });
    const bad = await api.post('/publish', { topic, payload: '***', payload_encoding: 'base64' });
    expect(bad.status).toBe(400);
    expect(bad.body.reason_code).toBe(131);
    await client.endAsync();
  });

  it('rejects wildcard and empty topics with reason_code 144 topic_name_invalid', async () => {
    for (const topic of ['a/+/b', 'a/#', '']) {
      const response = await api.post('/publish', { topic, payload: 'x' });
      expect(response.status, topic).toBe(400);
      expect(response.body).toEqual({ reason_code: 144, message: 'topic_name_invalid' });
    }
  });

  it('rejects schema failures with 400 BAD_REQUEST', async () => {
    const cases = [{ payload: 'no topic' }, { topic: 't' }, { topic: 't', payload: 'x', qos: 3 }, { topic: 't', payload: 'x', payload_encoding: 'hex' }];
    for (const body of cases) {
      const response = await api.post('/publish', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.code).toBe('BAD_REQUEST');
    }
    expect((await api.post('/publish', { payload: 'x' })).body.message).toBe('Missing required parameter: topic');
  });

  it('accepts MQTT 5 properties and bypasses the ACL (sender http_api)', async () => {
    const topic = `${unique('props')}/t`;
    const { client, received } = await subscriber(topic);
    await api.post(`${AUTHZ_RULES}/all`, { rules: [{ topic, permission: 'deny', action: 'publish' }] });
    try {
      const response = await api.post('/publish', {
        topic,
        payload: 'with props',
        properties: { user_properties: { k: 'v' }, message_expiry_interval: 60, content_type: 'text/plain' },
      });
      expect(response.status).toBe(200);
      await waitFor(() => received.some((m) => m.payload === 'with props'), { what: 'the message' });
    } finally {
      await api.delete(`${AUTHZ_RULES}/all`);
      await client.endAsync();
    }
  });
});

describe('POST /publish/bulk', () => {
  it('answers 200 with ids in request order when every message reached a subscriber', async () => {
    const base = unique('bulk');
    const { client, received } = await subscriber(`${base}/#`);
    const response = await api.post('/publish/bulk', [
      { topic: `${base}/1`, payload: 'one' },
      { topic: `${base}/2`, payload: 'two', qos: 1 },
    ]);
    expect(response.status).toBe(200);
    expect(response.body).toHaveLength(2);
    for (const item of response.body) expect(item.id).toMatch(MESSAGE_ID);
    await waitFor(() => received.length === 2, { what: 'both messages' });
    expect(received.map((m) => m.payload).sort()).toEqual(['one', 'two']);
    await client.endAsync();
  });

  it('answers 202 when some message found no subscriber, with per-message results', async () => {
    const base = unique('mixed');
    const { client } = await subscriber(`${base}/yes`);
    const response = await api.post('/publish/bulk', [
      { topic: `${base}/yes`, payload: 'a' },
      { topic: `${base}/no`, payload: 'b' },
    ]);
    expect(response.status).toBe(202);
    expect(response.body[0].id).toMatch(MESSAGE_ID);
    expect(response.body[1]).toEqual({ reason_code: 16, message: 'no_matching_subscribers' });
    await client.endAsync();
  });

  it('rejects the whole batch when one item is invalid, publishing nothing', async () => {
    const base = unique('atomic');
    const { client, received } = await subscriber(`${base}/#`);
    const response = await api.post('/publish/bulk', [
      { topic: `${base}/ok`, payload: 'should not be sent' },
      { topic: `${base}/+`, payload: 'bad topic' },
    ]);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ reason_code: 144, message: 'topic_name_invalid' });
    expect((await api.post('/publish/bulk', [])).status).toBe(400);
    await api.post('/publish', { topic: `${base}/marker`, payload: 'marker' });
    await waitFor(() => received.some((m) => m.payload === 'marker'), { what: 'the marker' });
    expect(received.map((m) => m.payload)).toEqual(['marker']);
    await client.endAsync();
  });
});

describe('statistics, metrics and nodes', () => {
  it('counts connections, subscriptions, topics and messages for real', async () => {
    const base = unique('stats');
    const before = (await api.get('/stats?aggregate=true')).body;
    const metricsBefore = (await api.get('/metrics?aggregate=true')).body;
    const a = await subscriber(`${base}/a`);
    const b = await subscriber(`${base}/b`);
    const during = (await api.get('/stats?aggregate=true')).body;
    expect(during['connections.count']).toBe(before['connections.count'] + 2);
    expect(during['live_connections.count']).toBe(before['live_connections.count'] + 2);
    expect(during['sessions.count']).toBe(before['sessions.count'] + 2);
    expect(during['subscriptions.count']).toBe(before['subscriptions.count'] + 2);
    expect(during['topics.count']).toBe(before['topics.count'] + 2);
    expect(during['connections.max']).toBeGreaterThanOrEqual(during['connections.count'] as number);

    await a.client.publishAsync(`${base}/b`, 'to b', { qos: 1 });
    await waitFor(() => b.received.length === 1, { what: 'delivery to b' });
    await api.post('/publish', { topic: `${base}/nobody`, payload: 'lost' });
    await waitFor(async () => (await api.get('/metrics?aggregate=true')).body['messages.sent'] > metricsBefore['messages.sent'], {
      what: 'messages.sent',
    });
    const metrics = (await api.get('/metrics?aggregate=true')).body;
    // The MQTT PUBLISH and the REST one (emqx_mgmt.erl publish/1 counts it with emqx_metrics:inc_msg/1).
    expect(metrics['messages.received']).toBe(metricsBefore['messages.received'] + 2);
    expect(metrics['messages.publish']).toBe(metricsBefore['messages.publish'] + 2);
    expect(metrics['messages.sent']).toBe(metricsBefore['messages.sent'] + 1);
    expect(metrics['messages.dropped.no_subscribers']).toBe(metricsBefore['messages.dropped.no_subscribers'] + 1);
    expect(metrics['messages.dropped']).toBe(metricsBefore['messages.dropped'] + 1);
    expect(metrics['client.connected']).toBe(metricsBefore['client.connected'] + 2);
    expect(metrics['client.subscribe']).toBe(metricsBefore['client.subscribe'] + 2);
    expect(metrics['authentication.success']).toBe(metricsBefore['authentication.success'] + 2);
    expect(metrics['authorization.allow']).toBeGreaterThanOrEqual((metricsBefore['authorization.allow'] as number) + 3);

    await Promise.all([a.client.endAsync(), b.client.endAsync()]);
    await waitFor(async () => (await api.get('/stats?aggregate=true')).body['connections.count'] === before['connections.count'], {
      what: 'the connections to close',
    });
    const after = (await api.get('/metrics?aggregate=true')).body;
    expect(after['client.disconnected']).toBe(metricsBefore['client.disconnected'] + 2);
  });

  it('returns per-node arrays without aggregate=true', async () => {
    const stats = await api.get('/stats');
    expect(stats.status).toBe(200);
    expect(Array.isArray(stats.body)).toBe(true);
    expect(stats.body[0].node).toBe('emqx@127.0.0.1');
    expect(typeof stats.body[0]['live_connections.count']).toBe('number');
    const metrics = await api.get('/metrics');
    expect(metrics.body[0]).toMatchObject({ node: 'emqx@127.0.0.1' });
    expect(typeof metrics.body[0]['messages.received']).toBe('number');
  });

  it('describes the node and answers 404 for another node', async () => {
    const nodes = await api.get('/nodes');
    expect(nodes.status).toBe(200);
    expect(nodes.body).toHaveLength(1);
    expect(nodes.body[0]).toMatchObject({ node: 'emqx@127.0.0.1', node_status: 'running', role: 'core' });
    expect(typeof nodes.body[0].uptime).toBe('number');
    expect((await api.get('/nodes/emqx@127.0.0.1')).body.node).toBe('emqx@127.0.0.1');
    expect(typeof (await api.get('/nodes/emqx@127.0.0.1/stats')).body['connections.count']).toBe('number');
    expect(typeof (await api.get('/nodes/emqx@127.0.0.1/metrics')).body['messages.sent']).toBe('number');
    const other = await api.get('/nodes/emqx@10.0.0.9');
    expect(other.status).toBe(404);
    expect(other.body.code).toBe('NOT_FOUND');
  });

  it('reports current gauges and rates on /monitor_current', async () => {
    const { client } = await subscriber(`${unique('mon')}/x`);
    const response = await api.get('/monitor_current');
    expect(response.status).toBe(200);
    expect(response.body.live_connections).toBeGreaterThanOrEqual(1);
    expect(response.body.subscriptions).toBeGreaterThanOrEqual(1);
    for (const key of ['connections', 'topics', 'retained_msg_count', 'received_msg_rate', 'sent_msg_rate', 'dropped_msg_rate']) {
      expect(typeof response.body[key], key).toBe('number');
    }
    await client.endAsync();
  });
});
