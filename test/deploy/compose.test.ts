import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config';

/**
 * No Docker engine runs here, so the production stack is validated, not started: Debian's
 * docker-compose (1.29) checks docker-compose.yml against the compose schema and interpolation
 * without an engine. .ci/run installs it; a missing binary fails this test rather than skipping it.
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

async function composeConfig(env: Record<string, string>): Promise<string> {
  if (!['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].some((p) => existsSync(p))) {
    throw new Error('docker-compose is not installed: apt-get install docker-compose (.ci/run does this)');
  }
  const { stdout } = await run('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], {
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

  it('refuses to start without its secrets, naming the missing one', async () => {
    const { POSTGRES_PASSWORD: _omitted, ...rest } = secrets;
    await expect(composeConfig(rest)).rejects.toThrow(/set POSTGRES_PASSWORD/);
  });

  it('builds the worker from a multi-stage, non-root Dockerfile with the prebuilt bundle', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile.match(/^FROM node:20-bookworm-slim/gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/npm run build/);
    expect(readFileSync(path.join(root, 'package.json'), 'utf8')).toMatch(/"build": "tsc -p tsconfig.build.json && node dist\/src\/bundle.js"/);
  });
});
