import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryEnv, runBinary, runCliWith, type CliRun } from '../support/cli-runner';
import { projectRoot } from '../../src/config';
import { createPresenceActivities, DEFAULT_PRESENCE_SETTINGS } from '../../src/activities/presence';
import { stackEndpoints, waitFor } from '../harness';
import { freePort } from '../../devstack/services';
import { createEmqxClient } from '../../src/emqx';
import { DeviceOps } from '../../src/starter/client/index';
import { API_KEY, API_SECRET, connectDevice, nextMessage, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
});

afterAll(async () => {
  await env?.close();
});

async function cli(args: string[], stdin = ''): Promise<CliRun> {
  return runCliWith(env.ops, args, stdin);
}

describe('device-ops CLI, end to end', () => {
  it('subscriptions set reports what EMQX holds live, read back after the change, and says when the device is offline', async () => {
    await env.ops.provision({ clientId: 'cli-subs', password: 'subs-password-1', acl: [{ permission: 'allow', action: 'all', topic: 'devices/cli-subs/#' }], subscriptions: [] });
    const offline = await cli(['subscriptions', 'set', 'cli-subs', '--subscribe', 'devices/cli-subs/cmd:1']);
    expect(offline.code).toBe(0);
    expect(offline.stdout).toMatch(/live: +none, the device is offline/);
    expect(offline.stdout).not.toMatch(/applied now/);
    const offlineJson = JSON.parse((await cli(['subscriptions', 'set', 'cli-subs', '--subscribe', 'devices/cli-subs/cmd:1', '--json'])).stdout);
    expect(offlineJson).toMatchObject({ online: false, live: null, notLive: ['devices/cli-subs/cmd'] });

    const device = await connectDevice(env.broker, 'cli-subs', 'cli-subs', 'subs-password-1');
    try {
      const online = await cli(['subscriptions', 'set', 'cli-subs', '--subscribe', 'devices/cli-subs/cmd:1', '--subscribe', 'devices/cli-subs/ota:0']);
      expect(online.code).toBe(0);
      expect(online.stdout).toMatch(/live: +.*devices\/cli-subs\/cmd:1/);
      expect(online.stdout).toMatch(/devices\/cli-subs\/ota:0/);
      expect(online.stdout).not.toMatch(/not live/);
    } finally {
      await device.endAsync(true);
    }
  });

  it('provisions, enforces ACL, proxies subscriptions, rotates with kick and deprovisions', async () => {
    const provisioned = await cli(
      ['provision', 'cli-dev', '--password-stdin', '--acl', 'allow publish devices/${clientid}/up', '--acl', 'allow subscribe devices/${clientid}/cmd', '--subscribe', 'devices/cli-dev/cmd:1', '--wait', '--json'],
      'cli-password-1\n',
    );
    expect(provisioned.stderr).toBe('');
    expect(provisioned.code).toBe(0);
    expect(JSON.parse(provisioned.stdout)).toMatchObject({ clientId: 'cli-dev', workflowId: 'provision/cli-dev', status: 'completed' });

    const device = await connectDevice(env.broker, 'cli-dev', 'cli-dev', 'cli-password-1');
    const monitor = await env.ops.provision({ clientId: 'cli-monitor', password: 'monitor-password', acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/#' }], subscriptions: [] })
      .then(() => connectDevice(env.broker, 'cli-monitor', 'cli-monitor', 'monitor-password'));
    try {
      await monitor.subscribeAsync('devices/#');
      // Allowed publish arrives; a denied one sent before it never does (same connection, in order).
      const seen: string[] = [];
      monitor.on('message', (topic) => seen.push(topic));
      device.publish('devices/other/up', 'denied');
      await device.publishAsync('devices/cli-dev/up', 'allowed', { qos: 1 });
      await waitFor(() => seen.includes('devices/cli-dev/up'), { what: 'allowed publish' });
      expect(seen).not.toContain('devices/other/up');

      // The desired subscription was stored while offline; set it again now that the device is online.
      const subs = await cli(['subscriptions', 'set', 'cli-dev', '--subscribe', 'devices/cli-dev/cmd:1', '--json']);
      expect(JSON.parse(subs.stdout)).toMatchObject({ online: true, applied: 1, live: [expect.objectContaining({ topic: 'devices/cli-dev/cmd' })], notLive: [] });
      const received = nextMessage(device, 'devices/cli-dev/cmd');
      await env.emqx.publish({ topic: 'devices/cli-dev/cmd', payload: 'hello' });
      expect(await received).toBe('hello');

      const status = await cli(['status', 'cli-dev', '--json']);
      expect(JSON.parse(status.stdout)).toMatchObject({ clientId: 'cli-dev', online: true, provisioned: true });
      const acl = await cli(['acl', 'show', 'cli-dev', '--json']);
      expect(JSON.parse(acl.stdout).emqx.at(-1)).toEqual({ permission: 'deny', action: 'all', topic: '#' });

      const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
      const rotated = await cli(['rotate-credentials', 'cli-dev', '--password-stdin', '--kick', '--wait', '--json'], 'cli-password-2');
      expect(JSON.parse(rotated.stdout)).toMatchObject({ status: 'completed', kicked: true });
      await closed;
      await expect(connectDevice(env.broker, 'cli-dev', 'cli-dev', 'cli-password-1')).rejects.toThrow();
      const reconnected = await connectDevice(env.broker, 'cli-dev', 'cli-dev', 'cli-password-2');
      const kickedAgain = new Promise<void>((resolve) => reconnected.once('close', () => resolve()));

      const deprovisioned = await cli(['deprovision', 'cli-dev', '--wait', '--json']);
      expect(JSON.parse(deprovisioned.stdout)).toMatchObject({ status: 'completed', kicked: true });
      await kickedAgain;
      await expect(connectDevice(env.broker, 'cli-dev', 'cli-dev', 'cli-password-2')).rejects.toThrow();
    } finally {
      await Promise.allSettled([device.endAsync(true), monitor.endAsync()]);
    }
  });

  it('rejects bad input before anything starts, naming the field', async () => {
    const cases: [string[], RegExp][] = [
      [['provision', '', '--generate-password'], /clientId: must not be empty/],
      [['provision', 'x'.repeat(200), '--generate-password'], /clientId: must be at most 128/],
      [['provision', 'ok', '--generate-password', '--acl', 'allow publish'], /expected "<allow\|deny>/],
      [['provision', 'ok', '--generate-password', '--acl', 'maybe publish a'], /permission/],
      [['provision', 'ok', '--generate-password', '--subscribe', 'a/b:7'], /qos must be 0, 1 or 2/],
      [['provision', 'ok'], /exactly one of --password-stdin or --generate-password/],
      [['provision-fleet', '--file', 'devices.txt'], /--file/],
      [['history', 'ok', '--limit', '0'], /limit/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
    const noWorkflow = await cli(['provision', 'ok', '--generate-password', '--acl', 'allow publish a/#/b']);
    expect(noWorkflow).toMatchObject({ code: 2, connected: false });
    expect(noWorkflow.stderr).toMatch(/acl/i);
  });

  it('stores only the alarm settings given; the rest stays the worker\'s defaults', async () => {
    const provisioned = await cli(['provision', 'cli-grace', '--password-stdin', '--alarm-grace', '5m', '--wait'], 'cli-grace-password\n');
    expect(provisioned.code).toBe(0);
    expect((await env.history.getDevice('cli-grace'))?.alarmPolicy).toEqual({ graceMs: 300_000 });
    const defaults = { graceMs: 60_000, escalationMs: [120_000], flapThreshold: 5, flapWindowMs: 600_000 };
    const policy = await createPresenceActivities({ emqx: env.emqx, history: env.history, presence: { ...DEFAULT_PRESENCE_SETTINGS, defaults } }).loadPresencePolicy({ clientId: 'cli-grace' });
    expect(policy).toMatchObject({ graceMs: 300_000, escalationMs: [120_000], monitored: true });
  });

  it('reports a failed workflow with status failed and a non-zero exit', async () => {
    const result = await cli(['rotate-credentials', 'never-provisioned', '--generate-password', '--json']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'failed', error: expect.stringMatching(/not provisioned/) });
    expect(result.stderr).toMatch(/^error: .*not provisioned/);
  });

  it('works as the real binary, configured from the environment', async () => {
    const { temporalAddress, mongoUri } = stackEndpoints();
    const childEnv = {
      ...process.env,
      DEVICE_OPS_ENV_FILE: path.join(projectRoot(), 'no-such-env-file'),
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_TASK_QUEUE: env.taskQueue,
      EMQX_API_URL: env.broker.apiUrl,
      EMQX_API_KEY: API_KEY,
      EMQX_API_SECRET: API_SECRET,
      MONGODB_URI: mongoUri,
      MONGODB_DB: env.dbName,
      PAYLOAD_ENCRYPTION_KEYS: env.keys,
    };
    const run = (args: string[], stdin: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'src/starter/cli/main.ts'), ...args], { env: childEnv });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(stdin);
      });
    const provisioned = await run(['provision', 'bin-dev', '--password-stdin', '--wait', '--json'], 'bin-password-1\n');
    expect(provisioned.stderr).toBe('');
    expect(JSON.parse(provisioned.stdout)).toMatchObject({ clientId: 'bin-dev', status: 'completed' });
    const device = await connectDevice(env.broker, 'bin-dev', 'bin-dev', 'bin-password-1');
    await device.endAsync();

    const missing = await run(['status', 'bin-dev'], '');
    expect(missing.code).toBe(0);
    const broken = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'src/starter/cli/main.ts'), 'status', 'x'], {
        env: { ...childEnv, EMQX_API_KEY: '', TEMPORAL_ADDRESS: 'nope' },
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/TEMPORAL_ADDRESS: must be host:port/);
    expect(broken.stderr).toMatch(/EMQX_API_KEY: must not be empty/);
  });

  it('the real binary writes large piped output in full, and stops quietly when the reader closes early', async () => {
    const { temporalAddress, mongoUri } = stackEndpoints();
    const binEnv = binaryEnv({
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_TASK_QUEUE: env.taskQueue,
      EMQX_API_URL: env.broker.apiUrl,
      EMQX_API_KEY: API_KEY,
      EMQX_API_SECRET: API_SECRET,
      MONGODB_URI: mongoUri,
      MONGODB_DB: env.dbName,
      PAYLOAD_ENCRYPTION_KEYS: env.keys,
    });
    const base = Date.parse('2026-01-01T00:00:00Z');
    await env.history.connectionEvents.insertMany(
      Array.from({ length: 4_000 }, (_, i) => ({
        _id: `pipe-dev-${i}`,
        key: `pipe-dev-${i}`,
        clientId: 'pipe-dev',
        event: i % 2 ? ('connected' as const) : ('disconnected' as const),
        at: new Date(base + i * 1000).toISOString(),
        reason: `keepalive_timeout ${'x'.repeat(120)}`,
      })),
    );
    const full = await runBinary(['history', 'pipe-dev', '--limit', '4000', '--json'], { env: binEnv });
    expect(full.stderr).toBe('');
    expect(full.code).toBe(0);
    expect(full.bytesRead).toBeGreaterThan(4 * 65_536);
    expect(JSON.parse(full.stdout)).toHaveLength(4_000);

    const early = await runBinary(['history', 'pipe-dev', '--limit', '4000', '--json'], { env: binEnv, closeAfterBytes: 1 });
    expect(early.stderr).toBe('');
    expect(early.code).toBe(0);
  });

  it('the real binary fails within seconds when the stack is not running, naming each address and its variable', async () => {
    const [temporalPort, mongoPort, emqxPort] = [await freePort(), await freePort(), await freePort()];
    const closed = binaryEnv({
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      MONGODB_URI: `mongodb://127.0.0.1:${mongoPort}`,
      EMQX_API_URL: `http://127.0.0.1:${emqxPort}/api/v5`,
      EMQX_API_KEY: API_KEY,
      EMQX_API_SECRET: API_SECRET,
      PAYLOAD_ENCRYPTION_KEYS: env.keys,
    });
    for (const args of [['status', 'sensor-1'], ['temporal', 'setup']]) {
      const run = await runBinary(args, { env: closed });
      expect(run.code, args.join(' ')).toBe(1);
      // Loosely: the clients' own deadlines were 10 s and more.
      expect(run.ms, args.join(' ')).toBeLessThan(3_500);
      expect(run.stderr).toMatch(new RegExp(`^error: cannot reach Temporal at 127\\.0\\.0\\.1:${temporalPort} \\(TEMPORAL_ADDRESS\\): connection refused`));
      expect(run.stderr).toMatch(/npm run dev/);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
    const status = await runBinary(['status', 'sensor-1'], { env: closed });
    expect(status.stderr).toMatch(new RegExp(`cannot reach MongoDB at 127\\.0\\.0\\.1:${mongoPort} \\(MONGODB_URI\\)`));
  });

  it('says what is wrong in its own words, once: ACL options, an empty CSV password', async () => {
    const acl = await cli(['provision', 'ok', '--generate-password', '--acl', 'allow pub a/b']);
    expect(acl.code).toBe(2);
    expect(acl.stderr).toBe('error: ACL rule "allow pub a/b": action must be one of publish, subscribe, all\n');
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'fleet-')), 'devices.csv');
    writeFileSync(file, 'clientId,password\nd1,\nd2,short\n');
    const fleet = await cli(['provision-fleet', '--file', file]);
    expect(fleet.code).toBe(2);
    expect(fleet.stderr).toMatch(/line 2: password: is empty; must be at least 8 characters; line 3: password: must be at least 8 characters\n$/);
    expect(fleet.stderr).not.toMatch(/Invalid option|expected one of/);
  });

  it('deprovisioning a device nobody knows says so and exits non-zero', async () => {
    const human = await cli(['deprovision', 'nobody-here', '--wait']);
    expect(human.code).toBe(1);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(/^error: device nobody-here is unknown: EMQX had no credentials for it/);
    const json = await cli(['deprovision', 'nobody-here', '--wait', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ clientId: 'nobody-here', status: 'failed', hadCredentials: false });
  });

  it('plain status says which kind of alarm a device has', async () => {
    const raisedAt = new Date().toISOString();
    await env.history.alarms.save({ alarmId: `flappy|flapping|${Date.parse(raisedAt)}`, clientId: 'flappy', kind: 'flapping', level: 1, state: 'active', raisedAt, updatedAt: raisedAt, changes: [{ level: 1, state: 'active', at: raisedAt, change: 'raised' }] });
    const status = await cli(['status', 'flappy']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^alarm: flapping alarm, level 1, active since ${raisedAt}$`, 'm'));
  });

  it('names EMQX_API_URL when the EMQX API does not answer', async () => {
    const emqx = createEmqxClient({ baseUrl: `http://127.0.0.1:${await freePort()}/api/v5`, apiKey: API_KEY, apiSecret: API_SECRET });
    try {
      const ops = new DeviceOps({ temporal: env.temporal, taskQueue: env.taskQueue, emqx, history: env.history });
      const run = await runCliWith(ops, ['status', 'sensor-1']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^error: EMQX .*ECONNREFUSED.* \(EMQX_API_URL\)\. Is the local stack running \(npm run dev\)\?/);
    } finally {
      await emqx.close();
    }
  });
});
