import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../../src/config';

/**
 * No Docker engine runs here, so the production stack is validated, not started: compose-check
 * (devstack/compose-check, built with the Compose Specification's Go library that Docker Compose
 * itself uses; the test harness installs it into the cache) checks docker-compose.yml against the
 * compose schema and interpolation, as `docker compose config` does.
 */
const run = promisify(execFile);
const root = projectRoot();
const secrets = {
  DEVICE_OPS_EMQX_API_SECRET: 'compose-api-secret',
  DEVICE_OPS_WEBHOOK_TOKEN: 'compose-webhook-token-0001',
  DEVICE_OPS_PAYLOAD_KEYS: 'k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  POSTGRES_PASSWORD: 'compose-postgres',
  EMQX_DASHBOARD_PASSWORD: 'compose-dashboard',
};

async function composeConfig(env: Record<string, string>, file = path.join(root, 'docker-compose.yml')): Promise<string> {
  const { stdout } = await run(inject('composeCheckPath'), [file], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
  return stdout;
}

describe('docker-compose.yml', () => {
  it('validates, with every service the design names, health checks and restart policies', async () => {
    const config = await composeConfig(secrets);
    for (const service of ['postgresql', 'temporal', 'temporal-ui', 'mongodb', 'emqx', 'setup', 'worker', 'webhook', 'codec-server']) {
      expect(config).toMatch(new RegExp(`^  ${service}:$`, 'm'));
    }
    expect(config.match(/healthcheck:/g)?.length).toBeGreaterThanOrEqual(7);
    expect(config).toMatch(/EMQX_AUTHORIZATION__NO_MATCH: deny/);
    expect(config).toMatch(/TEMPORAL_CODEC_ENDPOINT: http:\/\/localhost:8888/);
    expect(config).toMatch(/device-ops.cjs temporal setup && node bin\/device-ops.cjs emqx setup --url/);
    expect(config).toMatch(/EMQX_AUTHENTICATION__1__USER_ID_TYPE: clientid/);
    expect(config).toMatch(/restart: unless-stopped/);
  });

  it('publishes the codec server, Temporal and its UI on the host loopback only', async () => {
    const config = await composeConfig(secrets);
    // The codec server decrypts history for whoever reaches it (docs/codec-server.md): it is
    // published on 127.0.0.1, never on every interface, and so are Temporal's gRPC port and UI.
    for (const [service, port] of [['codec-server', '8888'], ['temporal', '7233'], ['temporal-ui', '8233']] as const) {
      const section = config.split(/^  (?=\S)/m).find((part) => part.startsWith(`${service}:`));
      expect(section, service).toBeDefined();
      const published = [...(section as string).matchAll(/host_ip: (\S+)\n\s+target: \d+\n\s+published: "(\d+)"/g)];
      expect(published.map(([, ip, p]) => `${ip}:${p}`), service).toEqual([`127.0.0.1:${port}`]);
    }
  });

  it('refuses to start without its secrets, naming the missing one', async () => {
    const { POSTGRES_PASSWORD: _omitted, ...rest } = secrets;
    await expect(composeConfig(rest)).rejects.toThrow(/set POSTGRES_PASSWORD/);
  });

  it('rejects a file the Compose Specification does not allow, naming the key', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'compose-check-'));
    try {
      const file = path.join(dir, 'docker-compose.yml');
      const valid = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
      writeFileSync(file, valid.replace('    stop_grace_period: 45s\n', '    stop_grace_period: 45s\n    restart_policy_typo: always\n'));
      await expect(composeConfig(secrets, file)).rejects.toThrow(/worker.*restart_policy_typo/s);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('builds the worker from a multi-stage, non-root Dockerfile on Node 22 with the prebuilt bundle', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    // Both stages run the Node major that package.json `engines` names (Node 22 LTS).
    const engines = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toMatch(/^\^22\./);
    expect(dockerfile.match(/^FROM node:22-bookworm-slim/gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/npm run build/);
    expect(readFileSync(path.join(root, 'package.json'), 'utf8')).toMatch(/"build": "tsc -p tsconfig.build.json && node dist\/src\/bundle.js"/);
  });
});
