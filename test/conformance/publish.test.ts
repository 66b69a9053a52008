/**
 * Conformance of the dev broker's publish API with EMQX 5.8.9. Each test names the EMQX Common Test
 * case or source function it comes from.
 */
import { describe, expect, it } from 'vitest';
import { brokerForFile } from '../devstack/broker-helpers';

const V = 'https://github.com/emqx/emqx/blob/v5.8.9';
const PUBLISH_ERL = `${V}/apps/emqx_management/src/emqx_mgmt_api_publish.erl`;

const stack = brokerForFile();

describe(`${PUBLISH_ERL} api_spec/0 (check_schema => true) and fields(publish_message)`, () => {
  it('refuses a message with a field the schema does not know with 400, single and in bulk', async () => {
    const single = await stack.api.post('/publish', { topic: 'conf/t', payload: 'x', colour: 'red' });
    expect(single.status).toBe(400);
    expect(single.body.message).toContain('colour');
    const bulk = await stack.api.post('/publish/bulk', [{ topic: 'conf/t', payload: 'x' }, { topic: 'conf/t', payload: 'y', ttl: 5 }]);
    expect(bulk.status).toBe(400);
    expect(bulk.body.message).toContain('ttl');
  });

  it('accepts every field of the schema, including the deprecated clientid', async () => {
    const response = await stack.api.post('/publish', {
      topic: 'conf/t',
      clientid: 'ignored',
      payload: 'eA==',
      payload_encoding: 'base64',
      qos: 1,
      retain: false,
      properties: { user_properties: { k: 'v' } },
    });
    expect(response.status).toBe(202);
  });
});
