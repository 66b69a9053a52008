import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import { collectMessages, createUser, startTestBroker, unique, waitFor, type BrokerApi, type ReceivedMessage } from '../devstack/broker-helpers';

/**
 * Offline persistent sessions on the dev broker, checked against EMQX 5.8.9's own test cases with
 * real MQTT 3.1.1 clients (`clean: false`, EMQX's default session expiry of 2 hours):
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/test/emqx_mgmt_api_publish_SUITE.erl
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/test/emqx_mgmt_api_clients_SUITE.erl
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/test/emqx_persistent_session_SUITE.erl
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/test/emqx_mqueue_SUITE.erl
 */

const PASSWORD = 'sessions-test-pw';
let broker: RunningBroker;
let api: BrokerApi;

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

interface Device {
  clientId: string;
  connect(options?: IClientOptions): Promise<{ client: MqttClient; received: ReceivedMessage[]; sessionPresent: boolean }>;
}

/** A device with its own credentials that connects with `clean: false` unless told otherwise. */
async function persistentDevice(target: () => RunningBroker = () => broker, targetApi: () => BrokerApi = () => api): Promise<Device> {
  const clientId = unique('persistent');
  await createUser(targetApi(), clientId, PASSWORD);
  return {
    clientId,
    async connect(options = {}) {
      // Listening before the CONNACK: a resumed session's queue follows it at once.
      const client = connect(target().mqttUrl, { clientId, username: clientId, password: PASSWORD, clean: false, reconnectPeriod: 0, connectTimeout: 5_000, ...options });
      const received = collectMessages(client);
      const sessionPresent = await new Promise<boolean>((resolve, reject) => {
        client.once('connect', (connack) => resolve(connack.sessionPresent));
        client.once('error', reject);
      });
      return { client, received, sessionPresent };
    },
  };
}

/** Subscribes, then leaves without ending the session (DISCONNECT with clean_session=false keeps it). */
async function subscribeAndLeave(device: Device, filters: Record<string, { qos: 0 | 1 | 2 }>): Promise<void> {
  const { client } = await device.connect();
  await client.subscribeAsync(filters);
  await client.endAsync();
  await waitFor(async () => (await api.get(`/clients/${device.clientId}`)).body.connected === false, { what: 'the session to be offline' });
}

/** A probe through a fresh subscription: the connection works, and nothing old was waiting before it. */
async function expectNothingQueued(connection: { client: MqttClient; received: ReceivedMessage[] }, topic: string): Promise<void> {
  await connection.client.subscribeAsync(`${topic}/probe`, { qos: 1 });
  await api.post('/publish', { topic: `${topic}/probe`, payload: 'probe', qos: 1 });
  await waitFor(() => connection.received.some((m) => m.payload === 'probe'), { what: 'the probe' });
  expect(connection.received.map((m) => m.payload)).toEqual(['probe']);
}

describe('offline persistent sessions in the clients API', () => {
  // emqx_mgmt_api_clients_SUITE t_persistent_sessions1: connected, then listed as disconnected, then connected again.
  it('lists a disconnected clean_session=false client with connected: false, and as connected once it returns', async () => {
    const device = await persistentDevice();
    const first = await device.connect();
    await first.client.subscribeAsync(`${device.clientId}/cmd`, { qos: 1 });
    await first.client.endAsync();

    const listed = await waitFor(async () => {
      const page = (await api.get(`/clients?clientid=${device.clientId}`)).body;
      return page.data[0]?.connected === false ? page : null;
    }, { what: 'the offline session in the list' });
    expect(listed.meta.count).toBe(1);
    expect(listed.data).toHaveLength(1);
    const single = await api.get(`/clients/${device.clientId}`);
    expect(single.status).toBe(200);
    expect(single.body).toMatchObject({ clientid: device.clientId, connected: false, clean_start: false, expiry_interval: 7200 });
    expect(typeof single.body.disconnected_at).toBe('string');
    const stats = (await api.get('/stats?aggregate=true')).body;
    expect(stats['sessions.count']).toBeGreaterThan(stats['connections.count'] as number);
    // The offline session keeps its subscriptions (and their routes): listed per client and overall.
    const subscriptions = await api.get(`/clients/${device.clientId}/subscriptions`);
    expect(subscriptions.status).toBe(200);
    expect(subscriptions.body).toMatchObject([{ clientid: device.clientId, topic: `${device.clientId}/cmd`, qos: 1 }]);
    expect((await api.get(`/subscriptions?clientid=${device.clientId}`)).body.data).toHaveLength(1);
    const offlineOnly = (await api.get(`/clients?conn_state=disconnected&clientid=${device.clientId}`)).body;
    expect(offlineOnly.data.map((c: { clientid: string }) => c.clientid)).toEqual([device.clientId]);

    const second = await device.connect();
    expect(second.sessionPresent).toBe(true);
    const back = await api.get(`/clients/${device.clientId}`);
    expect(back.body.connected).toBe(true);
    expect((await api.get(`/clients?clientid=${device.clientId}`)).body.data).toHaveLength(1);
    await second.client.endAsync();
  });

  it('does not keep the session of a clean_session=true client', async () => {
    const device = await persistentDevice();
    const { client } = await device.connect({ clean: true });
    await client.endAsync();
    await waitFor(async () => (await api.get(`/clients/${device.clientId}`)).status === 404, { what: 'the client to be gone' });
  });

  // emqx_mgmt_api_clients_SUITE disconnect_and_destroy_session / t_persistent_sessions*: DELETE ends the session for good.
  it('DELETE /clients/{id} answers 204 for an offline session and discards it with its queue', async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/cmd`;
    await subscribeAndLeave(device, { [topic]: { qos: 1 } });
    expect((await api.post('/publish', { topic, payload: 'before-delete', qos: 1 })).status).toBe(200);

    expect((await api.delete(`/clients/${device.clientId}`)).status).toBe(204);
    expect((await api.get(`/clients/${device.clientId}`)).status).toBe(404);
    expect((await api.post('/publish', { topic, payload: 'after-delete', qos: 1 })).status).toBe(202);

    const back = await device.connect();
    expect(back.sessionPresent).toBe(false);
    await expectNothingQueued(back, topic);
    await back.client.endAsync();
  });

  // emqx_persistent_session_SUITE t_clean_start_drops_subscriptions: a clean start discards the session and its queue.
  it('discards the offline session when the client returns with clean_session=true', async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/cmd`;
    await subscribeAndLeave(device, { [topic]: { qos: 1 } });
    expect((await api.post('/publish', { topic, payload: 'queued', qos: 1 })).status).toBe(200);
    const clean = await device.connect({ clean: true });
    expect(clean.sessionPresent).toBe(false);
    await expectNothingQueued(clean, topic);
    await clean.client.endAsync();
    expect((await api.post('/publish', { topic, payload: 'gone', qos: 1 })).status).toBe(202);
  });
});

describe('REST publish to an offline session', () => {
  // emqx_mgmt_api_publish_SUITE t_publish_offline_api: 200 with only the id, QoS 0 included (mqueue_store_qos0 = true).
  it('answers 200 with only the message id, and the QoS 0 message is delivered when the client returns', async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/offline_api_topic`;
    await subscribeAndLeave(device, { [topic]: { qos: 0 } });
    const properties = {
      payload_format_indicator: 0,
      message_expiry_interval: 1000,
      correlation_data: 'some_correlation_id',
      user_properties: { foo: 'bar' },
      content_type: 'application/json',
    };
    const response = await api.post('/publish', { topic, payload: 'hello', properties });
    expect(response.status).toBe(200);
    expect(Object.keys(response.body as object)).toEqual(['id']);

    const back = await device.connect();
    await waitFor(() => back.received.length === 1, { what: 'the queued message' });
    expect(back.received[0]).toMatchObject({ topic, payload: 'hello' });
    await back.client.endAsync();
  });

  // emqx_mgmt_api_publish_SUITE t_publish_no_subscriber: nobody, not even an offline session, subscribes.
  it('answers 202 NO_MATCHING_SUBSCRIBERS when no session subscribes to the topic', async () => {
    const response = await api.post('/publish', { topic: `${unique('nobody')}/cmd`, payload: 'x', qos: 1 });
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ reason_code: 16, message: 'no_matching_subscribers' });
  });

  // emqx_mgmt_api_publish_SUITE t_publish_bulk_api / t_publish_no_subscriber_bulk: an offline session counts as a subscriber in a bulk too.
  it('answers 202 for a bulk where only some messages match an offline session, each with its own answer', async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/cmd`;
    await subscribeAndLeave(device, { [topic]: { qos: 1 } });
    const response = await api.post('/publish/bulk', [
      { topic, payload: 'a', qos: 1 },
      { topic: `${unique('nobody')}/cmd`, payload: 'b', qos: 1 },
    ]);
    expect(response.status).toBe(202);
    expect(Object.keys(response.body[0] as object)).toEqual(['id']);
    expect(response.body[1]).toEqual({ reason_code: 16, message: 'no_matching_subscribers' });
    expect((await api.delete(`/clients/${device.clientId}`)).status).toBe(204);
  });

  // emqx_persistent_session_SUITE t_publish_while_client_is_gone_qos1: queued messages arrive in order, at their QoS, once.
  it('delivers QoS 1 and QoS 2 messages queued while offline, in order, exactly once, at the lower of the two QoS', async () => {
    const device = await persistentDevice();
    const q1 = `${device.clientId}/q1`;
    const q2 = `${device.clientId}/q2`;
    await subscribeAndLeave(device, { [q1]: { qos: 1 }, [q2]: { qos: 2 } });
    for (const [topic, payload, qos] of [[q1, 'hello1', 1], [q2, 'hello2', 2], [q1, 'hello3', 2]] as const) {
      expect((await api.post('/publish', { topic, payload, qos })).status).toBe(200);
    }
    const offline = (await api.get(`/clients/${device.clientId}`)).body;
    expect(offline.mqueue_len).toBe(3);

    const back = await device.connect();
    const qos = new Map<string, number>();
    back.client.on('message', (_topic, payload, packet) => qos.set(payload.toString(), packet.qos));
    await waitFor(() => back.received.length >= 3, { what: 'the queued messages' });
    // mqtt.js hands a QoS 2 message over only after PUBREL, so only the QoS 1 ones keep their order here.
    expect(back.received.map((m) => m.payload).filter((p) => p !== 'hello2')).toEqual(['hello1', 'hello3']);
    expect(Object.fromEntries(qos)).toEqual({ hello1: 1, hello2: 2, hello3: 1 });
    // Once more through the broker: a message now, so anything sent twice would have arrived before it.
    await api.post('/publish', { topic: q1, payload: 'live', qos: 1 });
    await waitFor(() => back.received.some((m) => m.payload === 'live'), { what: 'the live message' });
    expect(back.received.map((m) => m.payload).sort()).toEqual(['hello1', 'hello2', 'hello3', 'live']);
    await back.client.endAsync();
    await waitFor(async () => (await api.get(`/clients/${device.clientId}`)).body.mqueue_len === 0, { what: 'an empty queue' });
  });

  // emqx_persistent_session_SUITE t_multiple_subscription_matches: one copy per matching subscription.
  it('queues a message once per matching subscription', async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/multi/x`;
    await subscribeAndLeave(device, { [`${device.clientId}/multi/+`]: { qos: 2 }, [`${device.clientId}/multi/#`]: { qos: 2 } });
    expect((await api.post('/publish', { topic, payload: 'twice', qos: 2 })).status).toBe(200);
    const back = await device.connect();
    await waitFor(() => back.received.length >= 2, { what: 'both copies' });
    expect(back.received.map((m) => m.payload)).toEqual(['twice', 'twice']);
    await back.client.endAsync();
  });

  it('queues what devices publish over MQTT, not only REST publishes', async () => {
    const device = await persistentDevice();
    const sender = await persistentDevice();
    const topic = `${device.clientId}/from-mqtt`;
    await subscribeAndLeave(device, { [topic]: { qos: 1 } });
    const { client } = await sender.connect({ clean: true });
    await client.publishAsync(topic, 'over-mqtt', { qos: 1 });
    await client.endAsync();
    const back = await device.connect();
    await waitFor(() => back.received.some((m) => m.payload === 'over-mqtt'), { what: 'the queued MQTT message' });
    await back.client.endAsync();
  });
});

describe('REST subscribe and unsubscribe on behalf of an offline session', () => {
  const MGMT_ERL = 'https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt.erl';
  const CLIENTS_ERL = 'https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl';

  // The channel of a disconnected session stays in EMQX's channel table until the session
  // expires, so do_subscribe/2 finds it and the channel subscribes its session.
  it(`${MGMT_ERL} do_subscribe/2: subscribe answers 200, the offline session queues what the new filter matches and the client has it on return`, async () => {
    const device = await persistentDevice();
    const old = `${device.clientId}/old`;
    const added = `${device.clientId}/added`;
    await subscribeAndLeave(device, { [old]: { qos: 1 } });

    const response = await api.post(`/clients/${device.clientId}/subscribe`, { topic: added, qos: 1 });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ clientid: device.clientId, topic: added, qos: 1, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' });
    const listed = (await api.get(`/clients/${device.clientId}/subscriptions`)).body.map((s: { topic: string }) => s.topic);
    expect(listed.sort()).toEqual([added, old].sort());
    expect((await api.post('/publish', { topic: added, payload: 'while-away', qos: 1 })).status).toBe(200);

    const back = await device.connect();
    expect(back.sessionPresent).toBe(true);
    await waitFor(() => back.received.some((m) => m.payload === 'while-away'), { what: 'the queued message' });
    // The subscription is live in the resumed session too.
    await api.post('/publish', { topic: added, payload: 'live', qos: 1 });
    await waitFor(() => back.received.some((m) => m.payload === 'live'), { what: 'the live message' });
    expect(back.received.map((m) => m.payload)).toEqual(['while-away', 'live']);
    await back.client.endAsync();
  });

  it(`${CLIENTS_ERL} subscribe_batch/1: bulk subscribe of an offline session answers the plain list, and a retained message the filter matches is queued`, async () => {
    const device = await persistentDevice();
    const topic = `${device.clientId}/config`;
    await subscribeAndLeave(device, { [`${device.clientId}/old`]: { qos: 1 } });
    expect((await api.post('/publish', { topic, payload: 'retained-config', qos: 1, retain: true })).status).toBe(202);

    const bulk = await api.post(`/clients/${device.clientId}/subscribe/bulk`, [{ topic, qos: 1 }]);
    expect(bulk.status).toBe(200);
    expect(bulk.body).toEqual([{ clientid: device.clientId, topic, qos: 1, nl: 0, rap: 0, rh: 0, node: 'emqx@127.0.0.1' }]);
    expect((await api.get(`/clients/${device.clientId}`)).body.mqueue_len).toBe(1);

    const back = await device.connect();
    await waitFor(() => back.received.length === 1, { what: 'the retained message' });
    expect(back.received[0]).toMatchObject({ topic, payload: 'retained-config', retain: true });
    await back.client.endAsync();
    await api.post('/publish', { topic, payload: '', qos: 1, retain: true });
  });

  it(`${CLIENTS_ERL} unsubscribe/1, unsubscribe_batch/1: an offline session's subscription is removed with 204, and nothing queues for it any more`, async () => {
    const device = await persistentDevice();
    const [first, second] = [`${device.clientId}/a`, `${device.clientId}/b`];
    await subscribeAndLeave(device, { [first]: { qos: 1 }, [second]: { qos: 1 } });
    expect((await api.post(`/clients/${device.clientId}/unsubscribe`, { topic: first })).status).toBe(204);
    expect((await api.post(`/clients/${device.clientId}/unsubscribe/bulk`, [{ topic: second }])).status).toBe(204);
    expect((await api.get(`/clients/${device.clientId}/subscriptions`)).body).toEqual([]);
    expect((await api.post('/publish', { topic: first, payload: 'x', qos: 1 })).status).toBe(202);

    const back = await device.connect();
    // Published before the probe: it would arrive first if the session were still subscribed.
    expect((await api.post('/publish', { topic: second, payload: 'not-subscribed', qos: 1 })).status).toBe(202);
    await expectNothingQueued(back, `${device.clientId}/c`);
    await back.client.endAsync();
  });
});

describe('offline queue limits', () => {
  let limited: RunningBroker;
  let limitedApi: BrokerApi;

  beforeAll(async () => {
    ({ broker: limited, api: limitedApi } = await startTestBroker({ maxMqueueLen: 3, mqueueStoreQos0: false }));
  });

  afterAll(async () => {
    await limited.close();
  });

  // emqx_mqueue_SUITE t_in / t_dropped (emqx_mqueue:in/2): a full queue drops its oldest message.
  it('keeps at most max_mqueue_len messages, dropping the oldest', async () => {
    const device = await persistentDevice(() => limited, () => limitedApi);
    const topic = `${device.clientId}/cmd`;
    const { client } = await device.connect();
    await client.subscribeAsync(topic, { qos: 1 });
    await client.endAsync();
    await waitFor(async () => (await limitedApi.get(`/clients/${device.clientId}`)).body.connected === false, { what: 'the offline session' });
    for (let i = 1; i <= 5; i++) expect((await limitedApi.post('/publish', { topic, payload: `m${i}`, qos: 1 })).status).toBe(200);
    const offline = (await limitedApi.get(`/clients/${device.clientId}`)).body;
    expect(offline).toMatchObject({ mqueue_len: 3, mqueue_dropped: 2 });

    const back = await device.connect();
    await waitFor(() => back.received.length >= 3, { what: 'the kept messages' });
    await limitedApi.post('/publish', { topic, payload: 'live', qos: 1 });
    await waitFor(() => back.received.some((m) => m.payload === 'live'), { what: 'the live message' });
    expect(back.received.map((m) => m.payload)).toEqual(['m3', 'm4', 'm5', 'live']);
    await back.client.endAsync();
  });

  // emqx_mqueue_SUITE t_in_qos0: with mqueue_store_qos0 = false a QoS 0 message is not queued (the REST answer is still 200).
  it('does not queue QoS 0 messages when mqueue_store_qos0 is false', async () => {
    const device = await persistentDevice(() => limited, () => limitedApi);
    const topic = `${device.clientId}/cmd`;
    const { client } = await device.connect();
    await client.subscribeAsync(topic, { qos: 1 });
    await client.endAsync();
    await waitFor(async () => (await limitedApi.get(`/clients/${device.clientId}`)).body.connected === false, { what: 'the offline session' });
    expect((await limitedApi.post('/publish', { topic, payload: 'qos0', qos: 0 })).status).toBe(200);
    expect((await limitedApi.post('/publish', { topic, payload: 'qos1', qos: 1 })).status).toBe(200);
    expect((await limitedApi.get(`/clients/${device.clientId}`)).body.mqueue_len).toBe(1);
    const back = await device.connect();
    await waitFor(() => back.received.length >= 1, { what: 'the QoS 1 message' });
    await limitedApi.post('/publish', { topic, payload: 'live', qos: 1 });
    await waitFor(() => back.received.some((m) => m.payload === 'live'), { what: 'the live message' });
    expect(back.received.map((m) => m.payload)).toEqual(['qos1', 'live']);
    await back.client.endAsync();
  });
});
