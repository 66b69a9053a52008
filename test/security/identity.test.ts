import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import { createEmqxClient, type EmqxClient } from '../../src/emqx';
import {
  API_KEY,
  API_SECRET,
  AUTHZ_RULES,
  collectMessages,
  connectClient,
  connectRefusal,
  createUser,
  startTestBroker,
  subscribeGranted,
  unique,
  waitFor,
  type BrokerApi,
} from '../devstack/broker-helpers';

/**
 * A device's credentials act only as that device. The broker starts like a stock EMQX 5.8 and is
 * configured by the code `device-ops emqx setup` runs (`ensureAccessControl`): the built-in
 * database authenticator with `user_id_type = clientid`, so the password is checked against the
 * user named by the CONNECT's client id and the username is not an identity at all; with a
 * non-empty chain, a client id without a user is refused (not_authorized,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_chains.erl
 * do_authenticate/3; user lookup in apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl authenticate/2).
 * Devices get rules keyed by client id ending in a deny of `#`, as provisioning writes them.
 * The clients here speak MQTT 3.1.1, where a refused SUBSCRIBE is SUBACK 0x80 (MQTT 5 clients:
 * test/conformance/mqtt5.test.ts), except the MQTT 5 variants of impersonation and takeover: EMQX
 * answers an MQTT 5 CONNECT refused by authentication with the reason code of the failure
 * (`emqx_reason_codes:connack_error/1` from do_authenticate/2, sent by handle_out(connack, ...),
 * which maps it to the 3.1.1 return codes 4/5 only for older protocol versions:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_reason_codes.erl): 0x86 Bad User Name
 * or Password, 0x87 Not authorized.
 */

const NOT_AUTHORIZED = 5;
const BAD_USERNAME_OR_PASSWORD = 4;
const SUBACK_FAILURE = 0x80;
const MQTT5_BAD_USERNAME_OR_PASSWORD = 0x86;
const MQTT5_NOT_AUTHORIZED = 0x87;

async function provisionDevice(api: BrokerApi, clientId: string, password: string): Promise<void> {
  await createUser(api, clientId, password);
  const rules = await api.put(`${AUTHZ_RULES}/clients/${encodeURIComponent(clientId)}`, {
    clientid: clientId,
    rules: [
      { topic: 'sensors/${clientid}/#', permission: 'allow', action: 'all' },
      { topic: '#', permission: 'deny', action: 'all' },
    ],
  });
  if (rules.status !== 204) throw new Error(`rules: ${rules.status}`);
}

/**
 * Both ends: no_match allow with the stock file source left on (its acl.conf ends with
 * `{allow, all}`, so anything the device rules do not decide is allowed), and no_match deny with
 * the file source disabled (`emqx setup --disable-file-source`).
 */
const POSTURES = [
  { noMatch: 'allow', disableFileSource: false },
  { noMatch: 'deny', disableFileSource: true },
] as const;

describe.each(POSTURES)('identity bound to credentials, no_match $noMatch, file source disabled: $disableFileSource', ({ noMatch, disableFileSource }) => {
  let broker: RunningBroker;
  let api: BrokerApi;
  let emqx: EmqxClient;
  const open: MqttClient[] = [];
  const sensor1 = unique('sensor-1');
  const sensor3 = unique('sensor-3');

  beforeAll(async () => {
    ({ broker, api } = await startTestBroker({ stock: true }));
    emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET });
    await emqx.ensureAccessControl({ noMatch, disableFileSource });
    await provisionDevice(api, sensor1, 'pw-sensor-1');
    await provisionDevice(api, sensor3, 'pw-sensor-3');
  });

  afterAll(async () => {
    await Promise.all(open.map((c) => c.endAsync().catch(() => undefined)));
    await emqx.close();
    await broker.close();
  });

  it('is set up as emqx setup leaves EMQX', async () => {
    expect(await emqx.getAuthenticator()).toMatchObject({ user_id_type: 'clientid', password_hash_algorithm: { name: 'sha256', salt_position: 'prefix' } });
    expect((await emqx.getAuthzSettings()).no_match).toBe(noMatch);
    expect((await emqx.listAuthzSources()).map((s) => [s.type, s.enable])).toEqual([
      ['built_in_database', true],
      ['file', !disableFileSource],
    ]);
  });

  it("refuses another client id with a device's username and password (impersonation)", async () => {
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('evil-1'), username: sensor1, password: 'pw-sensor-1' })).toBe(NOT_AUTHORIZED);
  });

  it("refuses a device's credentials under another device's client id, and the real device stays connected (takeover)", async () => {
    const real = await connectClient(broker.mqttUrl, { clientId: sensor3, username: sensor3, password: 'pw-sensor-3' });
    open.push(real);
    const received = collectMessages(real);
    expect(await subscribeGranted(real, { [`sensors/${sensor3}/cmd`]: 1 })).toEqual({ [`sensors/${sensor3}/cmd`]: 1 });

    expect(await connectRefusal(broker.mqttUrl, { clientId: sensor3, username: sensor1, password: 'pw-sensor-1' })).toBe(BAD_USERNAME_OR_PASSWORD);
    expect(await connectRefusal(broker.mqttUrl, { clientId: sensor3, username: sensor3, password: 'pw-sensor-1' })).toBe(BAD_USERNAME_OR_PASSWORD);

    expect(real.connected).toBe(true);
    expect((await api.get(`/clients/${encodeURIComponent(sensor3)}`)).body).toMatchObject({ connected: true, username: sensor3 });
    await emqx.publish({ topic: `sensors/${sensor3}/cmd`, payload: 'still here', qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'still here'), { what: 'the real sensor-3 still receiving' });
  });

  it('MQTT 5: refuses impersonation with CONNACK 0x87 Not authorized', async () => {
    expect(await connectRefusal(broker.mqttUrl, { protocolVersion: 5, clientId: unique('evil-5'), username: sensor1, password: 'pw-sensor-1' })).toBe(MQTT5_NOT_AUTHORIZED);
  });

  it('MQTT 5: refuses a takeover with CONNACK 0x86 Bad User Name or Password, and the real MQTT 5 device stays connected', async () => {
    const real = await connectClient(broker.mqttUrl, { protocolVersion: 5, clientId: sensor1, username: sensor1, password: 'pw-sensor-1' });
    open.push(real);
    const received = collectMessages(real);
    expect(await subscribeGranted(real, { [`sensors/${sensor1}/cmd5`]: 1 })).toEqual({ [`sensors/${sensor1}/cmd5`]: 1 });

    expect(await connectRefusal(broker.mqttUrl, { protocolVersion: 5, clientId: sensor1, username: sensor3, password: 'pw-sensor-3' })).toBe(MQTT5_BAD_USERNAME_OR_PASSWORD);
    expect(await connectRefusal(broker.mqttUrl, { protocolVersion: 5, clientId: sensor1, username: sensor1, password: 'pw-sensor-3' })).toBe(MQTT5_BAD_USERNAME_OR_PASSWORD);

    expect(real.connected).toBe(true);
    expect((await api.get(`/clients/${encodeURIComponent(sensor1)}`)).body).toMatchObject({ connected: true, proto_ver: 5 });
    await emqx.publish({ topic: `sensors/${sensor1}/cmd5`, payload: 'still here over MQTT 5', qos: 1 });
    await waitFor(() => received.some((m) => m.payload === 'still here over MQTT 5'), { what: 'the real MQTT 5 device still receiving' });
    await real.endAsync();
  });

  it("keeps a device to its own topics: '#' and another device's topics are refused (wildcard access)", async () => {
    const device = await connectClient(broker.mqttUrl, { clientId: sensor1, username: sensor1, password: 'pw-sensor-1' });
    open.push(device);
    const granted = await subscribeGranted(device, { '#': 0, '+/#': 0, [`sensors/${sensor3}/#`]: 0, [`sensors/${sensor1}/#`]: 1 });
    expect(granted).toEqual({ '#': SUBACK_FAILURE, '+/#': SUBACK_FAILURE, [`sensors/${sensor3}/#`]: SUBACK_FAILURE, [`sensors/${sensor1}/#`]: 1 });

    // A username naming another device changes nothing: rules are keyed by the client id.
    const renamed = await connectClient(broker.mqttUrl, { clientId: sensor1, username: sensor3, password: 'pw-sensor-1' });
    open.push(renamed);
    expect(await subscribeGranted(renamed, { [`sensors/${sensor3}/#`]: 0 })).toEqual({ [`sensors/${sensor3}/#`]: SUBACK_FAILURE });
  });

  it('refuses a client with no credentials at all', async () => {
    expect(await connectRefusal(broker.mqttUrl, { clientId: unique('anon') })).toBe(BAD_USERNAME_OR_PASSWORD);
  });
});

describe('the hole user_id_type clientid closes', () => {
  it("with EMQX's default user_id_type username, a device's credentials work under any client id", async () => {
    const { broker, api } = await startTestBroker({ stock: true });
    try {
      const created = await api.post('/authentication', { mechanism: 'password_based', backend: 'built_in_database' });
      expect(created.body.user_id_type).toBe('username');
      await createUser(api, 'sensor-1', 'pw-sensor-1');
      const evil = await connectClient(broker.mqttUrl, { clientId: unique('evil-1'), username: 'sensor-1', password: 'pw-sensor-1' });
      expect(evil.connected).toBe(true);
      await evil.endAsync();
    } finally {
      await broker.close();
    }
  });
});
