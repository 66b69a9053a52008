import mqtt, { type MqttClient } from 'mqtt';
import { mapPooled } from '../src/activities/failures';

/**
 * Simulated MQTT devices for bench/presence.ts, in their own process (forked with an IPC channel):
 * 10,000 devices and the broker's 10,000 server sockets do not fit in one process's file limit.
 * Commands: connect (every device), storm (everyone drops and reconnects at once), flap (the first
 * `devices` drop and reconnect `cycles` times, `pauseMs` offline and `pauseMs` online each time), close.
 */

type Command = { cmd: 'connect'; url: string; ids: string[] } | { cmd: 'storm' } | { cmd: 'flap'; devices: number; cycles: number; pauseMs: number } | { cmd: 'close' };

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let url = '';
let ids: string[] = [];
let clients: MqttClient[] = [];

const connectOne = (id: string): Promise<MqttClient> =>
  mqtt.connectAsync(url, { clientId: id, username: id, password: `${id}-pw`, reconnectPeriod: 0, connectTimeout: 60_000, keepalive: 600 });

async function handle(command: Command): Promise<Record<string, unknown>> {
  const started = performance.now();
  switch (command.cmd) {
    case 'connect':
      url = command.url;
      ids = command.ids;
      clients = await mapPooled(ids, 200, connectOne);
      break;
    case 'storm':
      clients = await mapPooled(clients, 500, async (client, i) => {
        await client.endAsync(true);
        return connectOne(ids[i] as string);
      });
      break;
    case 'flap': {
      const flapping = await mapPooled(clients.slice(0, command.devices), 500, async (client, i) => {
        let current = client;
        for (let cycle = 0; cycle < command.cycles; cycle++) {
          await current.endAsync(true);
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
      await mapPooled(clients, 500, (c) => c.endAsync(true));
      clients = [];
      break;
  }
  return { ok: true, seconds: (performance.now() - started) / 1000 };
}

process.on('message', (command: Command) => {
  handle(command).then(
    (reply) => process.send?.(reply),
    (err: unknown) => process.send?.({ ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
