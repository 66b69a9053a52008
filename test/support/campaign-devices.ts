import type { MqttClient } from 'mqtt';
import type { RunningBroker } from '../../devstack/broker';
import type { EmqxClient } from '../../src/emqx';
import { connectDevice } from './device-ops-env';

/**
 * Real MQTT devices for campaign tests: each connects with its own credentials, subscribes to its
 * command topic and records every message it receives with the arrival time.
 */

export const DEVICE_PASSWORD = 'campaign-device-password';

export interface Arrival {
  clientId: string;
  topic: string;
  payload: string;
  at: number;
}

/** Observes for `ms`, checking every 200 ms, so a claim like "nothing arrives while paused" is measured over a real window. */
export async function observe(ms: number, check: () => Promise<void> | void): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await check();
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function registerDevices(emqx: EmqxClient, clientIds: readonly string[]): Promise<void> {
  for (let i = 0; i < clientIds.length; i += 500) {
    await emqx.importUsers('plain', clientIds.slice(i, i + 500).map((id) => ({ user_id: id, password: DEVICE_PASSWORD })));
  }
}

export class TestDevices {
  readonly arrivals: Arrival[] = [];
  private readonly connected = new Map<string, MqttClient>();

  constructor(private readonly broker: RunningBroker) {}

  /** Connects (clean session) and subscribes to `topic` (default `campaign/<id>/cmd`) before resolving. */
  async connect(clientId: string, topic = `campaign/${clientId}/cmd`, qos: 0 | 1 = 1): Promise<void> {
    const client = await connectDevice(this.broker, clientId, clientId, DEVICE_PASSWORD);
    client.on('message', (t: string, payload: Buffer) => this.arrivals.push({ clientId, topic: t, payload: payload.toString(), at: Date.now() }));
    await client.subscribeAsync(topic, { qos });
    this.connected.set(clientId, client);
  }

  async connectAll(clientIds: readonly string[], topic?: (id: string) => string): Promise<void> {
    await Promise.all(clientIds.map((id) => this.connect(id, topic?.(id))));
  }

  received(clientId: string): Arrival[] {
    return this.arrivals.filter((a) => a.clientId === clientId);
  }

  async disconnectAll(): Promise<void> {
    await Promise.all([...this.connected.values()].map((c) => c.endAsync()));
    this.connected.clear();
  }
}

export function ids(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
}
