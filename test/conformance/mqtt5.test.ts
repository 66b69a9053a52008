/**
 * MQTT 5 clients on the dev broker, checked against EMQX 5.8.9 with real MQTT 5 clients (mqtt.js
 * `protocolVersion: 5`). Each test names the EMQX Common Test case or source function it comes from.
 */
import { connect, type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AUTHN_USERS,
  AUTHZ_RULES,
  brokerForFile,
  connectClient,
  connectRefusal,
  subscribeGranted,
  unique,
  waitFor,
  WebhookReceiver,
  wireWebhook,
} from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const CHANNEL_ERL = `${V}/apps/emqx/src/emqx_channel.erl`;
const CHANNEL_SUITE = `${V}/apps/emqx/test/emqx_channel_SUITE.erl`;
const V5_SUITE = `${V}/apps/emqx/test/emqx_mqtt_protocol_v5_SUITE.erl`;
const AUTHZ_SUITE = `${V}/apps/emqx_auth/test/emqx_authz/emqx_authz_SUITE.erl`;
const PUBLISH_SUITE = `${V}/apps/emqx_management/test/emqx_mgmt_api_publish_SUITE.erl`;
const TAKEOVER_SUITE = `${V}/apps/emqx/test/emqx_takeover_SUITE.erl`;
const RULE_ENGINE_SUITE = `${V}/apps/emqx_rule_engine/test/emqx_rule_engine_SUITE.erl`;
const RULE_EVENTS_ERL = `${V}/apps/emqx_rule_engine/src/emqx_rule_events.erl`;

const PASSWORD = 'mqtt5-conformance-pw';

// no_match deny, what `emqx setup` leaves: an ACL miss is a refusal.
const stack = brokerForFile({ authzNoMatch: 'deny' });

/** A device with credentials and rules allowing everything under `v5/<its id>/`. */
async function registerDevice(clientId = unique('v5')): Promise<{ clientId: string; prefix: string }> {
  const prefix = `v5/${clientId}`;
  await stack.api.post(AUTHN_USERS, { user_id: clientId, password: PASSWORD });
  await stack.api.put(`${AUTHZ_RULES}/clients/${clientId}`, { clientid: clientId, rules: [{ topic: `${prefix}/#`, permission: 'allow', action: 'all' }] });
  return { clientId, prefix };
}

function connectV5(clientId: string, options: IClientOptions = {}): Promise<MqttClient> {
  return connectClient(stack.broker.mqttUrl, { clientId, username: clientId, password: PASSWORD, protocolVersion: 5, ...options });
}

/**
 * Connects listening for messages before the CONNACK (a resumed session's queue follows it at
 * once), and tells whether the session was present.
 */
async function connectListening(clientId: string, options: IClientOptions): Promise<{ client: MqttClient; received: IPublishPacket[]; sessionPresent: boolean }> {
  const client = connect(stack.broker.mqttUrl, { clientId, username: clientId, password: PASSWORD, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000, ...options });
  const received = publishesOf(client);
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent));
    client.once('error', reject);
  });
  return { client, received, sessionPresent };
}

/** Every packet the client receives, as mqtt.js decoded it. */
function packetsOf(client: MqttClient): Packet[] {
  const packets: Packet[] = [];
  client.on('packetreceive', (packet) => packets.push(packet));
  return packets;
}

/** The reason code of the first `cmd` packet received (mqtt.js leaves it undefined for 0). */
async function reasonCodeOf(packets: Packet[], cmd: 'puback' | 'pubrec' | 'disconnect'): Promise<number> {
  const packet = await waitFor(() => packets.find((p) => p.cmd === cmd), { what: `a ${cmd}` });
  return (packet as { reasonCode?: number }).reasonCode ?? 0;
}

function publishesOf(client: MqttClient): IPublishPacket[] {
  const received: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => received.push(packet));
  return received;
}

describe('CONNECT', () => {
  it(`${CHANNEL_ERL} handle_out(connack, ...): a wrong password is CONNACK 0x86, an unknown user 0x87, MQTT 5's codes for 3.1.1's 4 and 5`, async () => {
    const { clientId } = await registerDevice();
    expect(await connectRefusal(stack.broker.mqttUrl, { clientId, username: clientId, password: 'wrong', protocolVersion: 5 })).toBe(0x86);
    const stranger = unique('stranger');
    expect(await connectRefusal(stack.broker.mqttUrl, { clientId: stranger, username: stranger, password: PASSWORD, protocolVersion: 5 })).toBe(0x87);
    const client = await connectV5(clientId);
    const info = await stack.api.get(`/clients/${clientId}`);
    expect(info.body).toMatchObject({ clientid: clientId, connected: true, proto_ver: 5, expiry_interval: 0 });
    expect((await stack.api.get(`/clients?proto_ver=5&clientid=${clientId}`)).body.data).toHaveLength(1);
    await client.endAsync();
  });
});

describe('topic aliases', () => {
  it(`${V5_SUITE} t_publish_topic_alias: a PUBLISH may set a topic alias and the next one use it (mqtt.max_topic_alias 65535)`, async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId);
    const received = publishesOf(client);
    await client.subscribeAsync(`${prefix}/aliased`, { qos: 1 });
    await client.publishAsync(`${prefix}/aliased`, 'first', { qos: 1, properties: { topicAlias: 1 } });
    await client.publishAsync('', 'second', { qos: 1, properties: { topicAlias: 1 } });
    await waitFor(() => received.length === 2, { what: 'both messages' });
    expect(received.map((p) => [p.topic, p.payload.toString()])).toEqual([
      [`${prefix}/aliased`, 'first'],
      [`${prefix}/aliased`, 'second'],
    ]);
    await client.endAsync();
  });
});

describe('authorization', () => {
  it(`${AUTHZ_SUITE} t_alias_prefix: SUBACK says 0x87 for a filter the ACL denies, next to a granted one`, async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId);
    expect(await subscribeGranted(client, { [`${prefix}/cmd`]: 1, 'elsewhere/#': 1 })).toEqual({ [`${prefix}/cmd`]: 1, 'elsewhere/#': 0x87 });
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body.map((s: { topic: string }) => s.topic)).toEqual([`${prefix}/cmd`]);
    await client.endAsync();
  });

  it(`${CHANNEL_ERL} process_publish/2 (deny_action = ignore): a denied QoS 1 PUBLISH gets PUBACK 0x87, QoS 2 PUBREC 0x87, the connection stays and nothing is routed`, async () => {
    const { clientId, prefix } = await registerDevice();
    const listener = await registerDevice();
    const watcher = await connectV5(listener.clientId);
    await stack.api.put(`${AUTHZ_RULES}/clients/${listener.clientId}`, { clientid: listener.clientId, rules: [{ topic: '#', permission: 'allow', action: 'subscribe' }] });
    await watcher.subscribeAsync('denied/#', { qos: 1 });
    const seen = publishesOf(watcher);
    const client = await connectV5(clientId);
    const packets = packetsOf(client);
    const qos1 = await client.publishAsync('denied/q1', 'x', { qos: 1 }).catch((err: { code?: number }) => err.code);
    expect(qos1).toBe(0x87);
    const qos2 = await client.publishAsync('denied/q2', 'x', { qos: 2 }).catch((err: { code?: number }) => err.code);
    expect(qos2).toBe(0x87);
    expect(await reasonCodeOf(packets, 'pubrec')).toBe(0x87);
    // Still connected: an allowed publish goes through, and the watcher never saw the denied ones.
    await watcher.subscribeAsync(`${prefix}/ok`, { qos: 1 });
    await client.publishAsync(`${prefix}/ok`, 'allowed', { qos: 1 });
    await waitFor(() => seen.some((p) => p.topic === `${prefix}/ok`), { what: 'the allowed message' });
    expect(seen.map((p) => p.topic)).toEqual([`${prefix}/ok`]);
    expect(client.connected).toBe(true);
    await client.endAsync();
    await watcher.endAsync();
  });
});

describe('no matching subscribers', () => {
  it(`${CHANNEL_SUITE} t_handle_in_qos1_publish / t_handle_in_qos2_publish: PUBACK and PUBREC carry 16 when nobody subscribes, 0 once someone does`, async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId);
    const packets = packetsOf(client);
    await client.publishAsync(`${prefix}/nobody`, 'x', { qos: 1 });
    expect(await reasonCodeOf(packets, 'puback')).toBe(16);
    await client.publishAsync(`${prefix}/nobody`, 'x', { qos: 2 });
    expect(await reasonCodeOf(packets, 'pubrec')).toBe(16);
    expect(packets.some((p) => p.cmd === 'pubcomp')).toBe(true);

    const received = publishesOf(client);
    await client.subscribeAsync(`${prefix}/somebody`, { qos: 2 });
    packets.length = 0;
    await client.publishAsync(`${prefix}/somebody`, 'q1', { qos: 1 });
    expect(await reasonCodeOf(packets, 'puback')).toBe(0);
    await client.publishAsync(`${prefix}/somebody`, 'q2', { qos: 2 });
    expect(await reasonCodeOf(packets, 'pubrec')).toBe(0);
    await waitFor(() => received.length === 2, { what: 'both messages' });
    expect(received.map((p) => p.payload.toString()).sort()).toEqual(['q1', 'q2']);
    await client.endAsync();
  });

  it('routes a PUBLISH answered with 16 all the same: a retained one is kept for later subscribers', async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId);
    const packets = packetsOf(client);
    await client.publishAsync(`${prefix}/retained`, 'kept', { qos: 1, retain: true });
    expect(await reasonCodeOf(packets, 'puback')).toBe(16);
    const received = publishesOf(client);
    await client.subscribeAsync(`${prefix}/retained`, { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the retained message' });
    expect(received[0]).toMatchObject({ retain: true });
    expect(received[0]?.payload.toString()).toBe('kept');
    await client.endAsync();
  });
});

describe('session expiry', () => {
  it(`${V5_SUITE} t_connack_session_present: a Session Expiry Interval above 0 leaves an offline session, resumed with session present`, async () => {
    const { clientId, prefix } = await registerDevice();
    const first = await connectV5(clientId, { clean: true, properties: { sessionExpiryInterval: 7200 } });
    await first.subscribeAsync(`${prefix}/cmd`, { qos: 1 });
    await first.endAsync();
    const offline = await waitFor(async () => {
      const info = await stack.api.get(`/clients/${clientId}`);
      return info.body.connected === false ? info.body : null;
    }, { what: 'the offline session' });
    expect(offline).toMatchObject({ proto_ver: 5, clean_start: true, expiry_interval: 7200, subscriptions_cnt: 1 });

    const second = await connectListening(clientId, { clean: false, properties: { sessionExpiryInterval: 7200 } });
    expect(second.sessionPresent).toBe(true);
    expect((await stack.api.get(`/clients/${clientId}`)).body).toMatchObject({ connected: true, subscriptions_cnt: 1 });
    await second.client.endAsync();
  });

  it(`${CHANNEL_ERL} expiry_interval/2: without a Session Expiry Interval the session ends with the connection, even with Clean Start 0`, async () => {
    const { clientId } = await registerDevice();
    const client = await connectV5(clientId, { clean: false });
    await client.endAsync();
    await waitFor(async () => (await stack.api.get(`/clients/${clientId}`)).status === 404, { what: 'the session to end' });
  });

  it(`${CHANNEL_ERL} post_process_disconnect/3: a DISCONNECT with Session Expiry Interval 0 ends a session that was to be kept`, async () => {
    const { clientId } = await registerDevice();
    const client = await connectV5(clientId, { properties: { sessionExpiryInterval: 600 } });
    await client.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
    await waitFor(async () => (await stack.api.get(`/clients/${clientId}`)).status === 404, { what: 'the session to end' });
  });

  it(`${CHANNEL_ERL} maybe_update_expiry_interval/2: a DISCONNECT's Session Expiry Interval replaces the CONNECT's, and the session expires after it`, async () => {
    const { clientId } = await registerDevice();
    const client = await connectV5(clientId, { properties: { sessionExpiryInterval: 7200 } });
    await client.endAsync(false, { properties: { sessionExpiryInterval: 1 } });
    const offline = await waitFor(async () => {
      const info = await stack.api.get(`/clients/${clientId}`);
      return info.body.connected === false ? info.body : null;
    }, { what: 'the offline session' });
    expect(offline.expiry_interval).toBe(1);
    await waitFor(async () => (await stack.api.get(`/clients/${clientId}`)).status === 404, { what: 'the session to expire' });
  });

  it(`${V5_SUITE} t_connect_clean_start: Clean Start 1 discards the offline session, whatever the new expiry`, async () => {
    const { clientId, prefix } = await registerDevice();
    const first = await connectV5(clientId, { properties: { sessionExpiryInterval: 600 } });
    await first.subscribeAsync(`${prefix}/cmd`, { qos: 1 });
    await first.endAsync();
    await waitFor(async () => (await stack.api.get(`/clients/${clientId}`)).body.connected === false, { what: 'the offline session' });
    expect((await stack.api.post('/publish', { topic: `${prefix}/cmd`, payload: 'queued', qos: 1 })).status).toBe(200);
    const { client: fresh, received, sessionPresent } = await connectListening(clientId, { clean: true, properties: { sessionExpiryInterval: 600 } });
    expect(sessionPresent).toBe(false);
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body).toEqual([]);
    expect((await stack.api.post('/publish', { topic: `${prefix}/cmd`, payload: 'after', qos: 1 })).status).toBe(202);
    expect(received).toEqual([]);
    await fresh.endAsync();
  });
});

describe('REST publish properties', () => {
  const properties = {
    payload_format_indicator: 0,
    message_expiry_interval: 1000,
    response_topic: 'v5/reply',
    correlation_data: 'some_correlation_id',
    user_properties: { foo: 'bar' },
    content_type: 'application/json',
  };
  const expected = {
    payloadFormatIndicator: false,
    responseTopic: 'v5/reply',
    correlationData: Buffer.from('some_correlation_id'),
    userProperties: { foo: 'bar' },
    contentType: 'application/json',
  };

  it(`${PUBLISH_SUITE} t_publish_api: every property reaches an MQTT 5 subscriber, the expiry at most what was given`, async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId);
    const received = publishesOf(client);
    await client.subscribeAsync(`${prefix}/t1`, { qos: 0 });
    const response = await stack.api.post('/publish', { topic: `${prefix}/t1`, payload: 'hello', properties });
    expect(response.status).toBe(200);
    expect(Object.keys(response.body as object)).toEqual(['id']);
    await waitFor(() => received.length === 1, { what: 'the message' });
    const got = received[0]?.properties ?? {};
    expect(got).toMatchObject(expected);
    expect(got.messageExpiryInterval).toBeGreaterThan(0);
    expect(got.messageExpiryInterval).toBeLessThanOrEqual(1000);
    await client.endAsync();
  });

  it(`${PUBLISH_SUITE} t_publish_offline_api: queued for an offline MQTT 5 session and delivered with its properties on resume`, async () => {
    const { clientId, prefix } = await registerDevice();
    const first = await connectV5(clientId, { clean: false, properties: { sessionExpiryInterval: 60 } });
    await first.subscribeAsync(`${prefix}/offline_api_topic`, { qos: 0 });
    await first.endAsync();
    await waitFor(async () => (await stack.api.get(`/clients/${clientId}`)).body.connected === false, { what: 'the offline session' });
    const response = await stack.api.post('/publish', { topic: `${prefix}/offline_api_topic`, payload: 'hello', properties });
    expect(response.status).toBe(200);
    expect(Object.keys(response.body as object)).toEqual(['id']);

    const { client: back, received, sessionPresent } = await connectListening(clientId, { clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(sessionPresent).toBe(true);
    await waitFor(() => received.length === 1, { what: 'the queued message' });
    expect(received[0]?.payload.toString()).toBe('hello');
    expect(received[0]?.properties).toMatchObject(expected);
    expect(received[0]?.properties?.messageExpiryInterval).toBeLessThanOrEqual(1000);
    await back.endAsync();
  });

  it(`${PUBLISH_SUITE} fields(message_properties): a property the schema does not know is 400, and an MQTT 3.1.1 subscriber still gets the message`, async () => {
    const refused = await stack.api.post('/publish', { topic: 'v5/x', payload: 'x', properties: { colour: 'red' } });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('colour');
    const { clientId, prefix } = await registerDevice();
    const v3 = await connectClient(stack.broker.mqttUrl, { clientId, username: clientId, password: PASSWORD });
    const received = publishesOf(v3);
    await v3.subscribeAsync(`${prefix}/t`, { qos: 1 });
    expect((await stack.api.post('/publish', { topic: `${prefix}/t`, payload: 'plain', qos: 1, properties })).status).toBe(200);
    await waitFor(() => received.length === 1, { what: 'the message' });
    expect(received[0]?.properties).toBeUndefined();
    await v3.endAsync();
  });
});

describe('DISCONNECT reason codes', () => {
  it(`${TAKEOVER_SUITE} assert_client_exit(_, v5, kicked): DELETE /clients/{id} sends DISCONNECT 0x98`, async () => {
    const { clientId } = await registerDevice();
    const client = await connectV5(clientId);
    const packets = packetsOf(client);
    expect((await stack.api.delete(`/clients/${clientId}`)).status).toBe(204);
    expect(await reasonCodeOf(packets, 'disconnect')).toBe(0x98);
  });

  it(`${V5_SUITE} t_connect_duplicate_clientid: a second connection with the same id sends the first DISCONNECT 0x8E`, async () => {
    const { clientId } = await registerDevice();
    const first = await connectV5(clientId);
    const packets = packetsOf(first);
    const second = await connectV5(clientId);
    expect(await reasonCodeOf(packets, 'disconnect')).toBe(0x8e);
    await second.endAsync();
  });
});

describe(`webhook events of MQTT 5 clients (${RULE_EVENTS_ERL})`, () => {
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
    await wireWebhook(stack.api, {
      name: 'mqtt5_events',
      receiverUrl: receiver.url,
      from: ['$events/client_connected', '$events/client_disconnected', '$events/session_subscribed', '$events/session_unsubscribed', 'v5/#'],
    });
  });

  afterAll(async () => {
    await receiver.close();
  });

  it(`${RULE_ENGINE_SUITE} t_events: proto_ver 5 and the CONNECT, SUBSCRIBE, PUBLISH, UNSUBSCRIBE and DISCONNECT properties`, async () => {
    const { clientId, prefix } = await registerDevice();
    const client = await connectV5(clientId, { properties: { sessionExpiryInterval: 60, receiveMaximum: 10 } });
    const connected = await waitFor(() => receiver.events('client.connected', clientId)[0], { what: 'client.connected' });
    expect(connected.body).toMatchObject({
      proto_ver: 5,
      expiry_interval: 60,
      receive_maximum: 10,
      conn_props: { 'Session-Expiry-Interval': 60, 'Receive-Maximum': 10, 'User-Property': {} },
    });

    await client.subscribeAsync(`${prefix}/t1`, { qos: 1, properties: { userProperties: { topic_name: 't1' } } });
    const subscribed = await waitFor(() => receiver.events('session.subscribed', clientId)[0], { what: 'session.subscribed' });
    expect(subscribed.body.sub_props).toMatchObject({ 'User-Property': { topic_name: 't1' } });

    await client.publishAsync(`${prefix}/t1`, '{"id": 1}', { qos: 1, properties: { messageExpiryInterval: 60 } });
    const published = await waitFor(() => receiver.events('message.publish', clientId)[0], { what: 'message.publish' });
    expect(published.body.pub_props).toEqual({ 'Message-Expiry-Interval': 60, 'User-Property': {} });

    await client.unsubscribeAsync(`${prefix}/t1`, { properties: { userProperties: { topic_name: 't1' } } });
    const unsubscribed = await waitFor(() => receiver.events('session.unsubscribed', clientId)[0], { what: 'session.unsubscribed' });
    expect(unsubscribed.body.unsub_props).toMatchObject({ 'User-Property': { topic_name: 't1' } });

    await client.endAsync(false, { reasonCode: 0, properties: { userProperties: { reason: 'normal' } } });
    const disconnected = await waitFor(() => receiver.events('client.disconnected', clientId)[0], { what: 'client.disconnected' });
    expect(disconnected.body).toMatchObject({
      reason: 'normal',
      proto_ver: 5,
      disconn_props: { 'User-Property': { reason: 'normal' }, 'User-Property-Pairs': [{ key: 'reason', value: 'normal' }] },
    });
  });

  it(`${CHANNEL_ERL} disconnect_reason/1: a DISCONNECT's reason code is the event's reason under EMQX's name`, async () => {
    const { clientId } = await registerDevice();
    const client = await connectV5(clientId);
    await client.endAsync(false, { reasonCode: 0x04 });
    const disconnected = await waitFor(() => receiver.events('client.disconnected', clientId)[0], { what: 'client.disconnected' });
    expect(disconnected.body.reason).toBe('disconnect_with_will_message');
  });
});
