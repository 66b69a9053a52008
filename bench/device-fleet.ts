import mqtt, { type MqttClient } from 'mqtt';
import { mapPooled } from '../src/activities/failures';

/**
 * Simulated MQTT devices for bench/presence.ts, in their own process (forked with an IPC channel):
 * 10,000 devices and the broker's 10,000 server sockets do not fit in one process's file limit.
 * Commands: connect (every device), storm (everyone drops and reconnects at once), close.
 */

type Command = { cmd: 'connect'; url: string; ids: string[] } | { cmd: 'storm' } | { cmd: 'close' };

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
