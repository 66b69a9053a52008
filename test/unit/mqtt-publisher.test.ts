import { describe, expect, it } from 'vitest';
import { freePort } from '../../devstack/services';
import { MqttPublisher } from '../../src/emqx/mqtt-publisher';

describe('MqttPublisher errors', () => {
  it('never show credentials written into CAMPAIGN_MQTT_URL', async () => {
    const port = await freePort(); // nothing listens there
    const publisher = MqttPublisher.start({ url: `mqtt://svc-user:url-secret-123@127.0.0.1:${port}`, clientId: 'p', username: 'svc-user', password: 'pw', protocolVersion: 4 });
    try {
      const err = await publisher.waitConnected(300).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`127.0.0.1:${port}`);
      expect((err as Error).message).not.toContain('url-secret-123');
      expect((err as Error).message).not.toContain('svc-user');
    } finally {
      await publisher.close();
    }
  });
});
