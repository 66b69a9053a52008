/**
 * Conformance of the dev broker's connectors, actions and rules API with EMQX 5.8.9. Each test
 * names the EMQX Common Test case or source function it comes from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerForFile, unique, WebhookReceiver, wireWebhook} from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const RULE_API_ERL = `${V}/apps/emqx_rule_engine/src/emqx_rule_engine_api.erl`;
const RULE_ENGINE_ERL = `${V}/apps/emqx_rule_engine/src/emqx_rule_engine.erl`;
const RULE_SCHEMA_ERL = `${V}/apps/emqx_rule_engine/src/emqx_rule_engine_schema.erl`;
const CONNECTOR_SUITE = `${V}/apps/emqx_connector/test/emqx_connector_api_SUITE.erl`;
const ACTION_SUITE = `${V}/apps/emqx_bridge/test/emqx_bridge_v2_api_SUITE.erl`;
const BRIDGE_API_SUITE = `${V}/apps/emqx_bridge/test/emqx_bridge_api_SUITE.erl`;

let receiver: WebhookReceiver;

const stack = brokerForFile();

beforeAll(async () => {
  receiver = await WebhookReceiver.start();
});

afterAll(async () => {
  await receiver.close();
});

const name = (): string => unique('conf').replace(/[^A-Za-z0-9_-]/g, '_');

describe(`${RULE_API_ERL} '/rules/:id'(put, ...) and ${RULE_ENGINE_ERL} post_config_update/5`, () => {
  it('PUT of an unknown rule id creates the rule and answers 200', async () => {
    const id = name();
    const response = await stack.api.put(`/rules/${id}`, { sql: 'SELECT * FROM "t/#"', actions: [], description: 'made by PUT' });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ id, sql: 'SELECT * FROM "t/#"', description: 'made by PUT', enable: true });
    expect((await stack.api.get(`/rules/${id}`)).status).toBe(200);
  });

  it('PUT merges into the stored rule: fields left out keep their values', async () => {
    const id = name();
    await stack.api.post('/rules', { id, sql: 'SELECT * FROM "a/#"', actions: [], description: 'first' });
    const response = await stack.api.put(`/rules/${id}`, { description: 'second' });
    expect(response.body).toMatchObject({ id, sql: 'SELECT * FROM "a/#"', description: 'second' });
  });
});

describe(`${RULE_SCHEMA_ERL} fields("rules") with ${RULE_API_ERL} filter_out_request_body/1`, () => {
  it('refuses a rule field the schema does not know with 400, and accepts the fields the API drops', async () => {
    const refused = await stack.api.post('/rules', { id: name(), sql: 'SELECT * FROM "t"', actions: [], colour: 'red' });
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('BAD_REQUEST');
    expect(refused.body.message).toContain('colour');
    const accepted = await stack.api.post('/rules', { id: name(), sql: 'SELECT * FROM "t"', actions: [], status: 'x', metrics: {}, node: 'n' });
    expect(accepted.status).toBe(201);
  });
});

describe(`${CONNECTOR_SUITE}`, () => {
  it('t_connectors_lifecycle: an id EMQX cannot parse is 404 "Invalid connector ID", an unknown connector 404', async () => {
    for (const method of ['GET', 'DELETE'] as const) {
      const response = await stack.api.request(method, '/connectors/foo');
      expect(response.status).toBe(404);
      expect(response.body.code).toBe('NOT_FOUND');
      expect(response.body.message).toMatch(/^Invalid connector ID/);
    }
    expect((await stack.api.get(`/connectors/http:${name()}`)).status).toBe(404);
    expect((await stack.api.get('/connectors/http:bad.name')).body.message).toMatch(/^Invalid connector ID, Invalid name format\./);
  });

  it('t_create_with_bad_name: a name with a dot is refused with 400 and a JSON validation_error', async () => {
    const response = await stack.api.post('/connectors', { type: 'http', name: 'has.dot', url: receiver.url });
    expect(response.status).toBe(400);
    expect(response.body.code).toBe('BAD_REQUEST');
    expect(JSON.parse(response.body.message as string)).toMatchObject({ kind: 'validation_error', reason: expect.stringMatching(/^Invalid name format\./) });
  });
});

describe(`${ACTION_SUITE}`, () => {
  it('t_bad_name: an action name EMQX refuses is 400 with a JSON validation_error', async () => {
    const response = await stack.api.post('/actions', { type: 'http', name: '_bad_name', connector: 'whatever', parameters: {} });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body.message as string)).toMatchObject({ kind: 'validation_error', reason: expect.stringMatching(/^Invalid name format\./) });
  });

  it('t_bridges_lifecycle: deleting an unparsable action id is 404 "Invalid bridge ID"', async () => {
    const response = await stack.api.delete('/actions/foo');
    expect(response.status).toBe(404);
    expect(response.body.message).toMatch(/^Invalid bridge ID/);
  });
});

describe(`${BRIDGE_API_SUITE} t_check_dependent_actions_on_delete, with emqx_bridge_v2_api.erl handle_delete/3`, () => {
  it('deleting an action a rule uses answers 400 with the rule ids in `rules`, and deletes with also_delete_dep_actions=true', async () => {
    const wired = await wireWebhook(stack.api, { name: name(), receiverUrl: receiver.url, from: ['t/#'] });
    const refused = await stack.api.delete(`/actions/${wired.actionId}?also_delete_dep_actions=false`);
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({ code: 'BAD_REQUEST', message: 'Cannot delete action while active rules are depending on it', rules: [wired.ruleId] });
    expect((await stack.api.delete(`/actions/${wired.actionId}?also_delete_dep_actions=true`)).status).toBe(204);
  });
});
