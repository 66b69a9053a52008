import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config';
import { assertPortsFree, freePort, PortsInUseError } from '../../devstack/services';

const run = promisify(execFile);
const host = '127.0.0.1';
const held: net.Server[] = [];

/** A port something listens on for the whole file. */
async function busyPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  held.push(server);
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

let busy: [number, number];

beforeAll(async () => {
  busy = [await busyPort(), await busyPort()];
});

afterAll(async () => {
  await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
});

describe('busy ports', () => {
  it('are all named at once, each with the variable that moves it', async () => {
    const free = await freePort();
    const attempt = assertPortsFree(host, [
      { port: busy[0], variable: 'TEMPORAL_PORT' },
      { port: free, variable: 'MQTT_PORT' },
      { port: busy[1], variable: 'WEBHOOK_PORT' },
    ]);
    await expect(attempt).rejects.toBeInstanceOf(PortsInUseError);
    await expect(attempt).rejects.toThrow(
      `ports ${busy[0]} (TEMPORAL_PORT), ${busy[1]} (WEBHOOK_PORT) are already in use; set those variables to use other ports`,
    );
    await expect(assertPortsFree(host, [{ port: free, variable: 'MQTT_PORT' }])).resolves.toBeUndefined();
  });

  it('stop `npm run dev` before anything starts, naming every busy port in one message', async () => {
    const ports: Record<string, number> = {};
    for (const variable of ['TEMPORAL_UI_PORT', 'MONGODB_PORT', 'MQTT_WS_PORT', 'EMQX_API_PORT', 'WEBHOOK_PORT', 'CODEC_SERVER_PORT']) {
      ports[variable] = await freePort();
    }
    const env = { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) };
    env.TEMPORAL_PORT = String(busy[0]);
    env.MQTT_PORT = String(busy[1]);
    delete env.MONGODB_URI;
    const dev = run(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'devstack', 'dev.ts')], { env, cwd: projectRoot(), timeout: 60_000 });
    const failure = await dev.then(
      () => undefined,
      (err: { code: number; stderr: string; stdout: string }) => err,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain(
      `[devstack] ports ${busy[0]} (TEMPORAL_PORT), ${busy[1]} (MQTT_PORT) are already in use; set those variables to use other ports`,
    );
    // Nothing was installed or started: the check comes first.
    expect(failure?.stdout).not.toMatch(/starting|installing|building/);
  });
});
