import mqtt, { type MqttClient } from 'mqtt';
import { mapPooled } from '../src/activities/failures';
import { answerParentCommands } from './child-commands';

/**
 * Simulated MQTT devices for bench/presence.ts and test/resilience/replicas-kill.test.ts, in their
 * own process (forked with an IPC channel): 10,000 devices and the broker's 10,000 server sockets
 * do not fit in one process's file limit.
 * Commands: connect (every device; with `topic`, each subscribes to it at QoS 1, `${clientid}`
 * replaced, and counts what arrives), storm (everyone drops and reconnects at once, except the
 * `stayOffline` ones), flap (the first `devices` drop and reconnect `cycles` times, `pauseMs`
 * offline and `pauseMs` online each time), received (messages counted per device: first copies and
 * QoS 1 redeliveries with the DUP flag apart), close.
 */

type Command =
  | { cmd: 'connect'; url: string; ids: string[]; topic?: string }
  | { cmd: 'storm'; stayOffline?: string[] }
  | { cmd: 'flap'; devices: number; cycles: number; pauseMs: number }
  | { cmd: 'received' }
  | { cmd: 'close' };

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let url = '';
let ids: string[] = [];
let topic: string | undefined;
let clients: (MqttClient | undefined)[] = [];
const received = new Map<string, { messages: number; dup: number }>();

/** A connect that got no CONNACK in this long fails the command instead of holding it forever. */
const CONNECT_DEADLINE_MS = 120_000;

async function connectOne(id: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId: id, username: id, password: `${id}-pw`, reconnectPeriod: 0, connectTimeout: 60_000, keepalive: 600 });
  // Settles on connect, error, close or the deadline: on a machine at load 30 a fleet command once
  // waited for minutes on connects that neither succeeded nor failed.
  await new Promise<void>((resolve, reject) => {
    const settle = (err?: Error): void => {
      clearTimeout(timer);
      client.removeListener('connect', onConnect);
      client.removeListener('error', settle);
      client.removeListener('close', onClose);
      if (!err) return resolve();
      client.end(true);
      reject(err);
    };
    const onConnect = (): void => settle();
    const onClose = (): void => settle(new Error(`${id}: connection closed before CONNACK`));
    const timer = setTimeout(() => settle(new Error(`${id}: no CONNACK within ${CONNECT_DEADLINE_MS} ms`)), CONNECT_DEADLINE_MS);
    client.once('connect', onConnect);
    client.once('error', settle);
    client.once('close', onClose);
  });
  // After the connect: an error on a live connection is the broker's business, not a crash of the fleet.
  client.on('error', () => undefined);
  if (topic) {
    client.on('message', (_topic, _payload, packet) => {
      const counts = received.get(id) ?? { messages: 0, dup: 0 };
      if (packet.dup) counts.dup++;
      else counts.messages++;
      received.set(id, counts);
    });
    await client.subscribeAsync(topic.replaceAll('${clientid}', id), { qos: 1 });
  }
  return client;
}

async function handle(command: Command): Promise<Record<string, unknown>> {
  const started = performance.now();
  let extra: Record<string, unknown> = {};
  switch (command.cmd) {
    case 'connect':
      url = command.url;
      ids = command.ids;
      topic = command.topic;
      clients = await mapPooled(ids, 200, connectOne);
      break;
    case 'storm': {
      const offline = new Set(command.stayOffline ?? []);
      clients = await mapPooled(clients, 500, async (client, i) => {
        await client?.endAsync(true);
        const id = ids[i] as string;
        return offline.has(id) ? undefined : connectOne(id);
      });
      break;
    }
    case 'received':
      extra = { received: Object.fromEntries(received) };
      break;
    case 'flap': {
      const flapping = await mapPooled(clients.slice(0, command.devices), 500, async (client, i) => {
        let current = client;
        for (let cycle = 0; cycle < command.cycles; cycle++) {
          await current?.endAsync(true);
          await pause(command.pauseMs);
          current = await connectOne(ids[i] as string);
          await pause(command.pauseMs);
        }
        return current;
      });
      clients.splice(0, flapping.length, ...flapping);
      break;
    }
    case 'close':
      await mapPooled(clients, 500, async (c) => c?.endAsync(true));
      clients = [];
      break;
  }
  return { ok: true, seconds: (performance.now() - started) / 1000, ...extra };
}

answerParentCommands(handle);
