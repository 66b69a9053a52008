import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness';
import { connectDevice } from '../support/device-ops-env';
import { startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * Deliver-on-reconnect for devices whose subscriptions the device workflow re-applies (EMQX drops
 * a clean session's subscriptions on disconnect, and accepts proxy subscriptions only for a live
 * session: https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl,
 * subscribe_batch). A device that comes back before the campaign's deadline must get its message,
 * so the campaign may be woken only once the subscriptions are live. Real devices reconnect at
 * staggered moments around the campaign's first attempt, in several rounds, to meet the race.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const topicOf = (clientId: string): string => `wake/${clientId}/cmd`;

async function provision(clientId: string): Promise<void> {
  const topic = topicOf(clientId);
  await env.ops.provision({
    clientId,
    password: `${clientId}-password`,
    acl: [{ permission: 'allow', action: 'subscribe', topic }],
    subscriptions: [{ topic, qos: 1 }],
    alarmPolicy: { graceMs: 600_000, escalationMs: [] },
  });
}

/** A device that never subscribes by itself: only the re-applied subscription can bring it the message. */
async function connect(clientId: string, received: Map<string, string[]>): Promise<MqttClient> {
  const client = await connectDevice(env.broker, clientId, clientId, `${clientId}-password`);
  client.on('message', (topic: string, payload: Buffer) => {
    if (topic === topicOf(clientId)) received.set(clientId, [...(received.get(clientId) ?? []), payload.toString()]);
  });
  return client;
}

describe('deliver on reconnect', () => {
  it('delivers to every device that reconnects before the deadline, waking the campaign only once its subscriptions are live', async () => {
    const rounds = 3;
    const perRound = 4;
    for (let round = 1; round <= rounds; round++) {
      const ids = Array.from({ length: perRound }, (_, i) => `pw-r${round}-${i}`);
      await Promise.all(ids.map(provision));
      // Each device has been online once (its workflow applied its subscription), then left.
      const received = new Map<string, string[]>();
      for (const id of ids) {
        const client = await connect(id, received);
        await waitFor(async () => (await env.ops.subscriptions(id)).live?.some((s) => s.topic === topicOf(id)), { what: `${id} subscribed`, timeoutMs: 20_000 });
        await client.endAsync();
        await waitFor(async () => (await env.ops.presenceOf(id))?.presence === 'offline', { what: `${id} offline` });
      }

      // One wake-up per reconnect and no recheck before the deadline: only the wake-up path can
      // reach a device. A device back before the campaign's first attempt is found by the campaign
      // (it reads the device's session after recording it as waiting); one back after it, by its
      // own lookup once its subscriptions are live (docs/presence.md).
      const started = await env.ops.campaigns.start({
        targets: { list: ids.map((clientId) => ({ clientId })) },
        message: { topic: 'wake/${clientid}/cmd', payload: { format: 'text', text: `round ${round} for \${clientid}` }, qos: 1 },
        // No other subscriber here, so EMQX's answer is the device's: confirming at the device
        // (session reads around the publish) would count a device that subscribes during the
        // publish as not reached and send it the message again (docs/campaigns.md).
        offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 0, confirmAtDevice: false },
        deadlineMs: 25_000,
      });
      const devices: MqttClient[] = [];
      try {
        // Reconnects from just before the campaign's first attempt to well after it.
        for (const [i, id] of ids.entries()) {
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, 600));
          devices.push(await connect(id, received));
        }
        const result = await env.ops.campaigns.handle(started.campaignId).result();
        expect(result, `round ${round}`).toMatchObject({ state: 'completed', counts: { total: perRound, delivered: perRound } });
        await waitFor(() => ids.every((id) => (received.get(id) ?? []).length > 0), { what: `round ${round}: every device has its message`, timeoutMs: 5_000 });
        for (const id of ids) expect(received.get(id), id).toEqual([`round ${round} for ${id}`]);
      } finally {
        await Promise.all(devices.map((d) => d.endAsync()));
      }
    }
  });
});
