import { connect, type MqttClient } from 'mqtt';
import type { RunningBroker } from '../../devstack/broker';
import type { EmqxClient } from '../../src/emqx';

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

  /**
   * Connects (clean session unless `persistent`) and subscribes to `topic` (default
   * `campaign/<id>/cmd`) before resolving. A persistent device resuming its session gets what was
   * queued for it right after the CONNACK, so it listens before connecting.
   */
  async connect(clientId: string, topic = `campaign/${clientId}/cmd`, qos: 0 | 1 = 1, persistent = false): Promise<void> {
    const client = connect(this.broker.mqttUrl, { clientId, username: clientId, password: DEVICE_PASSWORD, clean: !persistent, reconnectPeriod: 0, connectTimeout: 5_000 });
    client.on('message', (t: string, payload: Buffer) => this.arrivals.push({ clientId, topic: t, payload: payload.toString(), at: Date.now() }));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(topic, { qos });
    this.connected.set(clientId, client);
  }

  /** Disconnects one device; a persistent one keeps its session in the broker. */
  async disconnect(clientId: string): Promise<void> {
    await this.connected.get(clientId)?.endAsync();
    this.connected.delete(clientId);
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
