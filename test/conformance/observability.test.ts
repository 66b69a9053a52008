/**
 * Conformance of the dev broker's metrics and status endpoints with EMQX 5.8.9. Each test names
 * the EMQX Common Test case or source function it comes from.
 */
import { describe, expect, it } from 'vitest';
import { AUTHN_USERS, connectClient, brokerForFile, unique, waitFor} from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const METRICS_SUITE = `${V}/apps/emqx_management/test/emqx_mgmt_api_metrics_SUITE.erl`;
const MGMT_ERL = `${V}/apps/emqx_management/src/emqx_mgmt.erl`;
const STATUS_ERL = `${V}/apps/emqx_management/src/emqx_mgmt_api_status.erl`;


const stack = brokerForFile();

describe(`${METRICS_SUITE}`, () => {
  it('t_metrics_api_cluster_bad_nodename: GET /metrics?aggregate=false&node=<not a node> answers []', async () => {
    const response = await stack.api.get('/metrics?aggregate=false&node=notanexistingatom');
    expect(response.status).toBe(200);
    expect(response.body).toEqual([]);
    const own = await stack.api.get('/metrics?aggregate=false&node=emqx@127.0.0.1');
    expect(own.body).toHaveLength(1);
    expect(own.body[0].node).toBe('emqx@127.0.0.1');
  });
});

describe(`${MGMT_ERL} publish/1 (emqx_metrics:inc_msg/1)`, () => {
  it('counts a REST publish in messages.received and messages.qosN.received, like an MQTT PUBLISH', async () => {
    const before = (await stack.api.get('/metrics?aggregate=true')).body;
    expect((await stack.api.post('/publish', { topic: `conf/${unique('nobody')}`, payload: 'x', qos: 1 })).status).toBe(202);
    await stack.api.post('/publish/bulk', [{ topic: 'conf/a', payload: 'y', qos: 2 }, { topic: 'conf/b', payload: 'z' }]);
    const after = (await stack.api.get('/metrics?aggregate=true')).body;
    expect(after['messages.received'] - before['messages.received']).toBe(3);
    expect(after['messages.qos1.received'] - before['messages.qos1.received']).toBe(1);
    expect(after['messages.qos2.received'] - before['messages.qos2.received']).toBe(1);
    expect(after['messages.qos0.received'] - before['messages.qos0.received']).toBe(1);

    const clientId = unique('mqtt-pub');
    await stack.api.post(AUTHN_USERS, { user_id: clientId, password: 'pw-123456' });
    const client = await connectClient(stack.broker.mqttUrl, { clientId, username: clientId, password: 'pw-123456' });
    await client.publishAsync('conf/c', 'w', { qos: 1 });
    await waitFor(async () => (await stack.api.get('/metrics?aggregate=true')).body['messages.received'] === after['messages.received'] + 1, {
      what: 'the MQTT PUBLISH counted',
    });
    await client.endAsync();
  });
});

describe(`${STATUS_ERL} do_get_status/2 and vsn/0`, () => {
  it('prints rel_vsn with the edition prefix (v for the open-source edition)', async () => {
    const response = await stack.api.get('/status?format=json');
    expect(response.body).toEqual({ rel_vsn: 'v5.8.9', node_name: 'emqx@127.0.0.1', broker_status: 'started', app_status: 'running' });
  });
});
