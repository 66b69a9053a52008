/**
 * Conformance of the dev broker's built-in database authentication and authorization APIs with
 * EMQX 5.8.9. Each test names the EMQX Common Test case or source function it comes from.
 */
import type { MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { AUTHN_USERS, AUTHZ_RULES, brokerForFile, connectClient, unique, waitFor } from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const AUTHZ_API_SUITE = `${V}/apps/emqx_auth_mnesia/test/emqx_authz_api_mnesia_SUITE.erl`;
const AUTHZ_MNESIA_SUITE = `${V}/apps/emqx_auth_mnesia/test/emqx_authz_mnesia_SUITE.erl`;
const AUTHZ_API_ERL = `${V}/apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl`;
const AUTHN_API_ERL = `${V}/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl`;

const PASSWORD = 'authz-conformance-pw';

const stack = brokerForFile({ authzNoMatch: 'deny' });

/** The rules of `?USERNAME_RULES_EXAMPLE` (apps/emqx_auth/include/emqx_authz.hrl), qos and retain given as text. */
const RULES_EXAMPLE = [
  { topic: 'test/topic/1', permission: 'allow', action: 'publish' },
  { topic: 'test/topic/2', permission: 'allow', action: 'subscribe' },
  { topic: 'eq test/#', permission: 'deny', action: 'all' },
  { topic: 'test/topic/3', permission: 'allow', action: 'publish', qos: ['1'], retain: 'true' },
  { topic: 'test/topic/4', permission: 'allow', action: 'publish', qos: ['0', '1', '2'], retain: 'all' },
];

describe(`${AUTHZ_API_SUITE}`, () => {
  it('t_api: rules with qos and retain as text are stored, and read back as numbers and booleans (emqx_authz_rule_raw.erl format_rule/1)', async () => {
    for (const [kind, key] of [['users', 'username'], ['clients', 'clientid']] as const) {
      const owner = unique(key);
      expect((await stack.api.post(`${AUTHZ_RULES}/${kind}`, [{ [key]: owner, rules: RULES_EXAMPLE }])).status).toBe(204);
      const stored = await stack.api.get(`${AUTHZ_RULES}/${kind}/${owner}`);
      expect(stored.status).toBe(200);
      expect(stored.body).toEqual({
        [key]: owner,
        rules: [
          { topic: 'test/topic/1', permission: 'allow', action: 'publish', qos: [0, 1, 2], retain: 'all' },
          { topic: 'test/topic/2', permission: 'allow', action: 'subscribe', qos: [0, 1, 2], retain: 'all' },
          { topic: 'eq test/#', permission: 'deny', action: 'all', qos: [0, 1, 2], retain: 'all' },
          { topic: 'test/topic/3', permission: 'allow', action: 'publish', qos: [1], retain: true },
          { topic: 'test/topic/4', permission: 'allow', action: 'publish', qos: [0, 1, 2], retain: 'all' },
        ],
      });
    }
    expect((await stack.api.post(`${AUTHZ_RULES}/all`, { rules: RULES_EXAMPLE })).status).toBe(204);
    expect((await stack.api.get(`${AUTHZ_RULES}/all`)).body.rules[3]).toMatchObject({ qos: [1], retain: true });
    expect((await stack.api.post(`${AUTHZ_RULES}/all`, { rules: [] })).status).toBe(204);
  });

  it(`${AUTHZ_API_ERL} api_spec/0 (check_schema => true) and fields(rule_item): unknown fields and values outside the types are 400`, async () => {
    const owner = unique('clientid');
    const put = (rules: unknown[], extra: Record<string, unknown> = {}) =>
      stack.api.put(`${AUTHZ_RULES}/clients/${owner}`, { clientid: owner, rules, ...extra });
    for (const [body, field] of [
      [put([{ topic: 't', permission: 'allow', action: 'publish', colour: 'red' }]), 'colour'],
      [put([], { colour: 'red' }), 'colour'],
      [put([{ topic: 't', permission: 'allow', action: 'publish', qos: ['3'] }]), 'qos'],
      [put([{ topic: 't', permission: 'allow', action: 'publish', retain: 'maybe' }]), 'retain'],
    ] as const) {
      const response = await body;
      expect(response.status).toBe(400);
      expect(response.body.message).toContain(field);
    }
  });
});

describe(`${AUTHZ_MNESIA_SUITE}`, () => {
  /** A QoS 1 or 0 publish by an MQTT 5 client: the PUBACK's reason code, or whether a watcher got a QoS 0 one. */
  async function publishOutcome(client: MqttClient, topic: string, qos: 0 | 1, retain: boolean, watcher: { received: string[] }, payload: string): Promise<'allowed' | 'denied'> {
    if (qos === 1) {
      const code = await client.publishAsync(topic, payload, { qos, retain }).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
      return code === 0 ? 'allowed' : 'denied';
    }
    await client.publishAsync(topic, payload, { qos, retain });
    // A probe after it on the same connection: had the QoS 0 one been allowed, it would have arrived first.
    await client.publishAsync(topic, `${payload}-probe`, { qos: 1, retain: true });
    await waitFor(() => watcher.received.includes(`${payload}-probe`), { what: 'the probe' });
    return watcher.received.includes(payload) ? 'allowed' : 'denied';
  }

  it('t_authz: a publish rule with qos ["1","2"] and retain "true" allows a retained QoS 1 publish only', async () => {
    const clientId = unique('authz');
    const topic = `t/${clientId}`;
    await stack.api.post(AUTHN_USERS, { user_id: clientId, password: PASSWORD });
    await stack.api.put(`${AUTHZ_RULES}/clients/${clientId}`, {
      clientid: clientId,
      rules: [
        { topic, permission: 'allow', action: 'publish', qos: ['1', '2'], retain: 'true' },
        { topic, permission: 'allow', action: 'subscribe' },
      ],
    });
    const client = await connectClient(stack.broker.mqttUrl, { clientId, username: clientId, password: PASSWORD, protocolVersion: 5 });
    const watcher = { received: [] as string[] };
    client.on('message', (_t, payload) => watcher.received.push(payload.toString()));
    await client.subscribeAsync(topic, { qos: 1, rap: true });

    expect(await publishOutcome(client, topic, 1, true, watcher, 'qos1-retained')).toBe('allowed');
    expect(await publishOutcome(client, topic, 1, false, watcher, 'qos1-not-retained')).toBe('denied');
    expect(await publishOutcome(client, topic, 0, true, watcher, 'qos0-retained')).toBe('denied');
    await client.publishAsync(topic, '', { qos: 1, retain: true });
    await client.endAsync();
  });
});

describe(`${AUTHN_API_ERL} api_spec/0 (check_schema => true)`, () => {
  it('fields(request_user_create) / fields(request_user_update): unknown fields are 400; is_superuser may be given as text', async () => {
    const userId = unique('user');
    const refused = await stack.api.post(AUTHN_USERS, { user_id: userId, password: 'p', colour: 'red' });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('colour');
    const created = await stack.api.post(AUTHN_USERS, { user_id: userId, password: 'p', is_superuser: 'true' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ user_id: userId, is_superuser: true });
    const update = await stack.api.put(`${AUTHN_USERS}/${userId}`, { password: 'q', colour: 'red' });
    expect(update.status).toBe(400);
  });
});
