import { describe, expect, it } from 'vitest';
import { createEmqxClient } from '../../src/emqx';
import { hashPassword } from '../../src/starter/client/credentials';
import { API_KEY, API_SECRET, connectClient, connectRefusal, startTestBroker, unique } from '../devstack/broker-helpers';

/**
 * The hash the client makes (EMQX's default, sha256 with the salt as a prefix; its vector is checked
 * in test/unit/credentials.test.ts), imported through the EMQX client, lets the device in with the
 * password and not without it.
 */
describe('hashPassword (the client hashes, EMQX stores the hash)', () => {
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
