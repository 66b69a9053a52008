import { describe, expect, it } from 'vitest';
import { createEmqxClient } from '../../src/emqx';
import { hashPassword } from '../../src/starter/credentials';
import { API_KEY, API_SECRET, connectClient, connectRefusal, startTestBroker, unique } from '../devstack/broker-helpers';

/**
 * The hash the project can send instead of a password matches EMQX's default algorithm, sha256
 * with the salt as a prefix: EMQX's own vector
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/test/emqx_authn/emqx_authn_password_hashing_SUITE.erl
 * hash_examples/0, the sha256 entry), and a hashed import through the client lets the device in.
 */
describe('hashPassword (the client hashes, EMQX stores the hash)', () => {
  it("reproduces EMQX's sha256/prefix example and makes a 32-hex-character salt", () => {
    expect(hashPassword('sha256', 'salt')).toEqual({
      passwordHash: 'ac63a624e7074776d677dd61a003b8c803eb11db004d0ec6ae032a5d7c9c5caf',
      salt: 'salt',
    });
    const fresh = hashPassword('pw');
    expect(fresh.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(hashPassword('pw').salt).not.toBe(fresh.salt);
  });

  it('imported as a hash, lets the device in with the password and not without it', async () => {
    const { broker } = await startTestBroker();
    const emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET });
    try {
      const clientId = unique('hashed');
      const { passwordHash, salt } = hashPassword('device-secret-1');
      await expect(emqx.importUsers('hash', [{ user_id: clientId, password_hash: passwordHash, salt }])).resolves.toMatchObject({ success: 1 });
      const client = await connectClient(broker.mqttUrl, { clientId, username: clientId, password: 'device-secret-1' });
      await client.endAsync();
      expect(await connectRefusal(broker.mqttUrl, { clientId, username: clientId, password: 'device-secret-2' })).toBe(4);
    } finally {
      await emqx.close();
      await broker.close();
    }
  });
});
