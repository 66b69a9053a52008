/**
 * Conformance of the dev broker's clients API with EMQX 5.8.9, case by case. Each test names the
 * EMQX Common Test case or source function it comes from; all run against the dev broker with
 * real MQTT clients (mqtt.js).
 */
import type { MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import {
  AUTHN_USERS,
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  brokerForFile,
  subscribeGranted,
  unique,
  waitFor,
} from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const CLIENTS_SUITE = `${V}/apps/emqx_management/test/emqx_mgmt_api_clients_SUITE.erl`;
const CLIENTS_ERL = `${V}/apps/emqx_management/src/emqx_mgmt_api_clients.erl`;
const MGMT_UTIL_ERL = `${V}/apps/emqx_management/src/emqx_mgmt_util.erl`;
const CHANNEL_ERL = `${V}/apps/emqx/src/emqx_channel.erl`;
const TOPIC_ERL = `${V}/apps/emqx/src/emqx_topic.erl`;

const NODE = 'emqx@127.0.0.1';
const PASSWORD = 'conformance-pw';
const CLIENTID_NOT_FOUND = { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' };


  // no_match deny, the project's recommended setting, so an ACL miss is a refusal.
const stack = brokerForFile({ authzNoMatch: 'deny' });

async function device(clientId = unique('conf')): Promise<{ clientId: string; client: MqttClient }> {
  await stack.api.post(AUTHN_USERS, { user_id: clientId, password: PASSWORD });
  await stack.api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
    clientid: clientId,
    rules: [{ topic: 'conf/#', permission: 'allow', action: 'all' }],
  });
  const client = await connectClient(stack.broker.mqttUrl, { clientId, username: clientId, password: PASSWORD, keepalive: 30 });
  return { clientId, client };
}

describe(`${CLIENTS_SUITE}`, () => {
  it('t_client_id_not_found: every per-client endpoint answers 404 CLIENTID_NOT_FOUND for an unknown id', async () => {
    const ghost = unique('no_existed_clientid');
    const sub = { topic: 'testtopic', qos: 1, nl: 1, rh: 1 };
    const calls: [string, string, unknown?][] = [
      ['GET', `/clients/${ghost}`],
      ['DELETE', `/clients/${ghost}`],
      ['GET', `/clients/${ghost}/subscriptions`],
      ['GET', `/clients/${ghost}/authorization/cache`],
      ['DELETE', `/clients/${ghost}/authorization/cache`],
      ['POST', `/clients/${ghost}/subscribe`, sub],
      ['POST', `/clients/${ghost}/subscribe/bulk`, [sub]],
      ['POST', `/clients/${ghost}/unsubscribe`, { topic: 'testtopic' }],
      ['POST', `/clients/${ghost}/unsubscribe/bulk`, [{ topic: 'testtopic' }]],
    ];
    for (const [method, path, body] of calls) {
      const response = await stack.api.request(method, path, body);
      expect([method, path, response.status, response.body]).toEqual([method, path, 404, CLIENTID_NOT_FOUND]);
    }
  });

  it('t_subscribe_shared_topic_nl: no_local on a shared subscription answers 400 INVALID_PARAMETER', async () => {
    const { clientId, client } = await device();
    const response = await stack.api.post(`/clients/${clientId}/subscribe`, { topic: '$share/group/testtopic', qos: 1, nl: 1, rh: 1 });
    expect(response.status).toBe(400);
    expect(response.body.code).toBe('INVALID_PARAMETER');
    expect(response.body.message).toMatch(/^Invalid Subscribe options: `no_local` not allowed for shared-sub/);
    await client.endAsync();
  });

  it('t_bulk_subscribe: bulk subscribe answers [_], the client receives, bulk unsubscribe answers 204 and it stops', async () => {
    const { clientId, client } = await device();
    const publisher = await device();
    const topic = `conf/${unique('bulk')}`;
    const after = `${topic}/after`;
    const received = collectMessages(client);
    const bulk = await stack.api.post(`/clients/${clientId}/subscribe/bulk`, [{ topic, qos: 1, nl: 1, rh: 1 }]);
    expect(bulk.status).toBe(200);
    expect(bulk.body).toEqual([{ qos: 1, nl: 1, rap: 0, rh: 1, node: NODE, clientid: clientId, topic }]);
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body).toHaveLength(1);
    await publisher.client.publishAsync(topic, 'hi1', { qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'hi1'), { what: 'hi1' });

    expect((await stack.api.post(`/clients/${clientId}/unsubscribe/bulk`, [{ topic }])).status).toBe(204);
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body).toEqual([]);
    // A later message on a topic still subscribed proves hi2 had its chance to arrive.
    await stack.api.post(`/clients/${clientId}/subscribe`, { topic: after, qos: 1 });
    await publisher.client.publishAsync(topic, 'hi2', { qos: 1 });
    await publisher.client.publishAsync(after, 'marker', { qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'marker'), { what: 'the marker' });
    expect(received.map((m) => m.payload)).toEqual(['hi1', 'marker']);
    await Promise.all([client.endAsync(), publisher.client.endAsync()]);
  });
});

describe(`${CLIENTS_SUITE} listing`, () => {
  it('t_query_clients_with_fields: fields picks client fields; unknown names and all mixed with names are refused', async () => {
    const { clientId, client } = await device();
    const list = (qs: string) => stack.api.get(`/clients?clientid=${clientId}&${qs}`);
    expect((await list('fields=clientid')).body.data).toEqual([{ clientid: clientId }]);
    expect((await list('fields=clientid,username')).body.data).toEqual([{ clientid: clientId, username: clientId }]);
    const all = (await list('fields=all')).body.data;
    expect(all).toEqual((await list('')).body.data);
    expect(Object.keys(all[0] as object).length).toBeGreaterThan(2);
    for (const bad of ['fields=bad_field_name', 'fields=all,bad_field_name', 'fields=all,username,clientid']) {
      expect([bad, (await list(bad)).status]).toEqual([bad, 400]);
    }
    await client.endAsync();
  });

  it('t_query_clients_with_time: lte_/gte_ created_at and connected_at take RFC 3339 or epoch milliseconds', async () => {
    const { clientId, client } = await device();
    const now = Date.now();
    const ids = async (qs: string): Promise<string[]> =>
      (await stack.api.get(`/clients?clientid=${clientId}&${qs}`)).body.data.map((c: { clientid: string }) => c.clientid);
    const rfc3339 = encodeURIComponent(new Date(now).toISOString());
    for (const key of ['created_at', 'connected_at']) {
      expect(await ids(`lte_${key}=${now}`)).toEqual([clientId]);
      expect(await ids(`lte_${key}=${rfc3339}`)).toEqual([clientId]);
      expect(await ids(`gte_${key}=${now + 1}`)).toEqual([]);
      expect(await ids(`gte_${key}=${now - 60_000}&lte_${key}=${now}`)).toEqual([clientId]);
    }
    await client.endAsync();
  });

  it('ip_address is compared as an address and a malformed one is 400 INVALID_PARAMETER (list_clients/1, emqx_mgmt_api.erl to_type/2)', async () => {
    const { clientId, client } = await device();
    expect((await stack.api.get(`/clients?clientid=${clientId}&ip_address=127.0.0.1`)).body.data).toHaveLength(1);
    expect((await stack.api.get(`/clients?clientid=${clientId}&ip_address=10.1.2.3`)).body.data).toEqual([]);
    const bad = await stack.api.get('/clients?ip_address=not-an-ip');
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ code: 'INVALID_PARAMETER', message: 'the ip_address parameter expected type is ip, but the value is not-an-ip' });
    await client.endAsync();
  });

  it('node lists that node, and a node EMQX does not know is 500 NODE_DOWN (list_clients/1)', async () => {
    const { clientId, client } = await device();
    expect((await stack.api.get(`/clients?clientid=${clientId}&node=${NODE}`)).body.data).toHaveLength(1);
    const other = await stack.api.get('/clients?node=emqx@elsewhere');
    expect(other.status).toBe(500);
    expect(other.body.code).toBe('NODE_DOWN');
    await client.endAsync();
  });

  it('client_example/0: a client carries recv_oct, recv_pkt, send_oct and send_pkt, counted on the wire', async () => {
    const { clientId, client } = await device();
    const traffic = async () => {
      const { recv_oct, recv_pkt, send_oct, send_pkt } = (await stack.api.get(`/clients/${clientId}`)).body;
      return { recv_oct, recv_pkt, send_oct, send_pkt };
    };
    const afterConnect = await traffic();
    // CONNECT in, CONNACK (4 bytes) out.
    expect(afterConnect).toMatchObject({ recv_pkt: 1, send_pkt: 1, send_oct: 4 });
    expect(afterConnect.recv_oct).toBeGreaterThan(10);
    await client.publishAsync('conf/traffic', 'payload', { qos: 1 });
    // The PUBLISH in, its PUBACK (4 bytes) out.
    const afterPublish = await waitFor(async () => {
      const now = await traffic();
      return now.send_pkt === 2 ? now : undefined;
    }, { what: 'the PUBACK counted' });
    expect(afterPublish).toMatchObject({ recv_pkt: 2, send_pkt: 2, send_oct: 8 });
    expect(afterPublish.recv_oct).toBe(afterConnect.recv_oct + 2 + 2 + 'conf/traffic'.length + 2 + 'payload'.length);
    await client.endAsync();
  });
});

describe(`${CLIENTS_ERL} api_spec/0 (check_schema => true)`, () => {
  it('refuses a subscribe body with a field the hocon schema does not know with 400', async () => {
    const { clientId, client } = await device();
    const single = await stack.api.post(`/clients/${clientId}/subscribe`, { topic: 'conf/x', qos: 1, colour: 'red' });
    expect(single.status).toBe(400);
    expect(single.body.message).toContain('colour');
    expect((await stack.api.post(`/clients/${clientId}/subscribe/bulk`, [{ topic: 'conf/x', colour: 'red' }])).status).toBe(400);
    expect((await stack.api.post(`/clients/${clientId}/unsubscribe`, { topic: 'conf/x', colour: 'red' })).status).toBe(400);
    await client.endAsync();
  });
});

describe(`${CLIENTS_ERL} subscribe_batch/1 with ${MGMT_UTIL_ERL} batch_operation/3`, () => {
  it('answers 200 {succeed, failed} with data [ClientID, Topic, Opts] and the ~p reason when a topic fails', async () => {
    const { clientId, client } = await device();
    const topic = `conf/${unique('ok')}`;
    const response = await stack.api.post(`/clients/${clientId}/subscribe/bulk`, [
      { topic, qos: 1 },
      { topic: '$share/g/conf/x', nl: 1 },
      { topic: '$share/g' },
    ]);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      succeed: [{ qos: 1, nl: 0, rap: 0, rh: 0, node: NODE, clientid: clientId, topic }],
      // batch_operation/3 folds the failures with a prepend: last failure first.
      failed: [
        { data: [clientId, '$share/g', { qos: 0, nl: 0, rap: 0, rh: 0 }], reason: '{invalid_topic_filter,<<"$share/g">>}' },
        { data: [clientId, '$share/g/conf/x', { qos: 0, nl: 1, rap: 0, rh: 0 }], reason: 'invalid_subopts_nl' },
      ],
    });
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body.map((s: { topic: string }) => s.topic)).toEqual([topic]);
    await client.endAsync();
  });

  it('never leaves a subscription behind for a client kicked during the call; its topics fail with channel_not_found', async () => {
    const { clientId, client } = await device();
    client.on('error', () => undefined);
    const topics = Array.from({ length: 2000 }, (_, i) => ({ topic: `conf/${clientId}/${i}` }));
    const bulkCall = stack.api.post(`/clients/${clientId}/subscribe/bulk`, topics);
    // Kick as soon as the first subscription lands, while the rest of the batch is under way.
    await waitFor(async () => (await stack.api.get(`/subscriptions?clientid=${clientId}`)).body.data.length > 0, { what: 'the first subscription' });
    expect((await stack.api.delete(`/clients/${clientId}`)).status).toBe(204);
    const bulk = await bulkCall;
    expect(bulk.status).toBe(200);
    const { succeed, failed } = bulk.body as { succeed: { topic: string }[]; failed: { data: unknown[]; reason: string }[] };
    expect(succeed.length).toBeGreaterThan(0);
    expect(succeed.length + failed.length).toBe(topics.length);
    for (const failure of failed) expect(failure).toMatchObject({ data: [clientId, expect.any(String), expect.any(Object)], reason: 'channel_not_found' });
    expect((await stack.api.get(`/subscriptions?clientid=${clientId}`)).body.data).toEqual([]);
  });
});

describe(`${TOPIC_ERL} parse/2`, () => {
  it('answers 500 UNKNOWN_ERROR with the ~p reason for a shared filter without a topic (subscribe/1)', async () => {
    const { clientId, client } = await device();
    for (const topic of ['$share/g', '$queue/$share/g/t', '$exclusive/']) {
      const response = await stack.api.post(`/clients/${clientId}/subscribe`, { topic });
      expect([topic, response.status, response.body.code]).toEqual([topic, 500, 'UNKNOWN_ERROR']);
      expect(response.body.message).toMatch(/^\{invalid_topic_filter,<<".*">>\}$/);
    }
    await client.endAsync();
  });
});

describe(`${CHANNEL_ERL} handle_info({subscribe, TopicFilters}, Channel)`, () => {
  it('grants a REST subscription the ACL denies (no check_sub_authzs), while the same MQTT SUBSCRIBE is refused', async () => {
    const { clientId, client } = await device();
    const denied = `forbidden/${unique('t')}`;
    expect(await subscribeGranted(client, { [denied]: 1 })).toEqual({ [denied]: 128 });

    const received = collectMessages(client);
    const response = await stack.api.post(`/clients/${clientId}/subscribe`, { topic: denied, qos: 1 });
    expect(response.status).toBe(200);
    expect((await stack.api.get(`/clients/${clientId}/subscriptions`)).body.map((s: { topic: string }) => s.topic)).toEqual([denied]);
    expect((await stack.api.post('/publish', { topic: denied, payload: 'through', qos: 1 })).status).toBe(200);
    await waitFor(() => received.some((m) => m.topic === denied && m.payload === 'through'), { what: 'the message on the denied topic' });

    const bulkDenied = `${denied}/bulk`;
    const bulk = await stack.api.post(`/clients/${clientId}/subscribe/bulk`, [{ topic: bulkDenied }]);
    expect(bulk.body).toEqual([{ qos: 0, nl: 0, rap: 0, rh: 0, node: NODE, clientid: clientId, topic: bulkDenied }]);
    await client.endAsync();
  });
});
