import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBroker } from '../../devstack/broker';
import { projectRoot } from '../../src/config';
import { createEmqxClient, EmqxNotConfiguredError, type EmqxClient } from '../../src/emqx';
import { missingAccessControl } from '../../src/emqx/errors';
import { History } from '../../src/store';
import { runDoctor, type CheckResult } from '../../src/starter/cli/doctor';
import { runEmqxSetup, SetupFailed } from '../../src/starter/cli/emqx-cli';
import { createWebhookAdapter, type WebhookAdapter } from '../../src/webhook/adapter';
import { freshDatabase, stackEndpoints, temporalClient, uniqueName, waitFor } from '../harness';
import { API_KEY, API_SECRET, connectClient, connectRefusal, startTestBroker, type BrokerApi } from '../devstack/broker-helpers';

/**
 * `device-ops emqx setup` and `device-ops doctor` on a broker started like a stock EMQX 5.8
 * (authentication [], authorization sources [file], no_match allow), with a real webhook adapter,
 * Temporal and MongoDB. The 404s of a stock EMQX come from
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl
 * (serialize_error/1) and apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl
 * (is_configured_authz_source/2).
 */

const TOKEN = 'setup-test-token-0123456789';
let broker: RunningBroker;
let api: BrokerApi;
let emqx: EmqxClient;
let adapter: WebhookAdapter;
let adapterUrl: string;
let database: Awaited<ReturnType<typeof freshDatabase>>;
let history: History;
let temporal: { close(): Promise<void> };
let env: Record<string, string>;

const byName = (results: CheckResult[]): Record<string, CheckResult> => Object.fromEntries(results.map((r) => [r.name, r]));

beforeAll(async () => {
  ({ broker, api } = await startTestBroker({ stock: true }));
  emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET });
  database = await freshDatabase('setup');
  history = new History(database.db);
  await history.ensureIndexes();
  const connected = await temporalClient();
  temporal = connected;
  adapter = createWebhookAdapter({
    history,
    temporal: new Client({ connection: connected.connection, namespace: stackEndpoints().namespace }),
    taskQueue: uniqueName('setup-queue'),
    token: TOKEN,
  });
  adapterUrl = `http://127.0.0.1:${await adapter.listen('127.0.0.1', 0)}`;
  const { temporalAddress, namespace, mongoUri } = stackEndpoints();
  env = {
    EMQX_API_URL: broker.apiUrl,
    EMQX_API_KEY: API_KEY,
    EMQX_API_SECRET: API_SECRET,
    WEBHOOK_TOKEN: TOKEN,
    WEBHOOK_PUBLIC_URL: `${adapterUrl}/emqx/events`,
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_NAMESPACE: namespace,
    MONGODB_URI: mongoUri,
    MONGODB_DB: database.name,
  };
});

afterAll(async () => {
  await adapter.close();
  await emqx.close();
  await broker.close();
  await temporal.close();
  await database.close();
});

describe('missingAccessControl: what EMQX answers when the authenticator or source is missing', () => {
  it('tells them apart from a missing user or rules', () => {
    expect(missingAccessControl(404, "Authenticator not found in the 'global' scope")).toBe('authenticator');
    expect(missingAccessControl(404, "Authenticator 'password_based:built_in_database' does not exist")).toBe('authenticator');
    expect(missingAccessControl(400, 'User error: {not_found,{authenticator,<<"password_based:built_in_database">>}}')).toBe('authenticator');
    // binfmt("~p") may break the term over lines.
    expect(missingAccessControl(400, 'User error: {not_found,\n    {authenticator,<<"password_based:built_in_database">>}}')).toBe('authenticator');
    expect(missingAccessControl(404, 'Not found: built_in_database')).toBe('authz_source');
    for (const [status, message] of [
      [404, 'User not found'],
      [404, 'Not Found'],
      [404, 'ClientID Not Found'],
      [404, 'Username Not Found'],
      [400, 'User error: bad_password'],
    ] as const) {
      expect(missingAccessControl(status, message)).toBeUndefined();
    }
  });
});

describe('a stock EMQX, before setup', () => {
  it('reads as "not configured: run emqx setup", never as "user absent" or "no rules"', async () => {
    for (const call of [
      () => emqx.getUser('dev-1'),
      () => emqx.createUser({ user_id: 'dev-1', password: 'pw-dev-1' }),
      () => emqx.getAclRules({ clientid: 'dev-1' }),
      () => emqx.putAclRules({ clientid: 'dev-1' }, [{ topic: '#', permission: 'deny', action: 'all' }]),
      () => emqx.deleteAclRules({ clientid: 'dev-1' }),
    ]) {
      const err = await call().then(
        () => new Error('resolved'),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EmqxNotConfiguredError);
      expect((err as Error).message).toMatch(/run `device-ops emqx setup`/);
    }
    expect(await connectClient(broker.mqttUrl, { clientId: 'anyone' }).then((c) => c.endAsync())).toBeUndefined();
  });

  it('doctor names the missing authenticator, source, no_match and webhook, and passes the rest', async () => {
    const results = byName(await runDoctor(env));
    expect(results['emqx-api']?.status).toBe('ok');
    expect(results.authenticator).toMatchObject({ status: 'fail', detail: 'no password_based:built_in_database authenticator', fix: 'run `device-ops emqx setup`' });
    expect(results['authz-source']).toMatchObject({ status: 'fail', fix: 'run `device-ops emqx setup`' });
    expect(results['no-match']?.status).toBe('fail');
    expect(results['file-source']?.status).toBe('warn');
    expect(results['webhook-rule']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/no rule device_ops_events/) });
    expect(results.temporal?.status).toBe('ok');
    expect(results.mongodb?.status).toBe('ok');
  });
});

describe('emqx setup', () => {
  it('creates the authenticator, source, no_match deny and the webhook; a second run changes nothing', async () => {
    const first = await runEmqxSetup({ webhook: true, disableFileSource: false, topic: [] }, env);
    expect(first).toMatchObject({ authenticator: 'created', authzSource: 'created', noMatch: 'updated', fileSource: 'enabled' });
    expect(first.webhook).toMatchObject({ url: `${adapterUrl}/emqx/events`, ruleId: 'device_ops_events', rule: 'created' });
    // Device replies (docs/jobs.md) go to the adapter's /emqx/replies through a rule of their own.
    expect(first.webhook?.replies).toEqual({ action: 'created', rule: 'created', ruleId: 'device_ops_replies', topics: ['devices/+/jobs/+/status', 'devices/+/commands/+/reply'] });
    expect(await emqx.getRule('device_ops_replies')).toMatchObject({ sql: 'SELECT * FROM "devices/+/jobs/+/status", "devices/+/commands/+/reply"', actions: ['http:device_ops_replies'] });
    expect((await emqx.getAction('http', 'device_ops_replies'))?.parameters).toMatchObject({ path: '/emqx/replies', method: 'post' });
    expect(JSON.stringify(first)).not.toContain(TOKEN);
    const second = await runEmqxSetup({ webhook: true, disableFileSource: true, topic: [] }, env);
    expect(second).toMatchObject({ authenticator: 'unchanged', authzSource: 'unchanged', noMatch: 'unchanged', fileSource: 'disabled' });
    expect(await emqx.getAuthenticator()).toMatchObject({ user_id_type: 'clientid', password_hash_algorithm: { name: 'sha256', salt_position: 'prefix' } });
    // The HTTP action's timeout is resource_opts.request_ttl; parameters.request_timeout is not sent.
    const action = await emqx.getAction('http', 'device_ops');
    expect(action).toMatchObject({ resource_opts: { request_ttl: '45s', inflight_window: 100, worker_pool_size: 16, health_check_interval: '15s' } });
    expect(action?.parameters).not.toHaveProperty('request_timeout');
    // One event per request over 8 connections, 8 pipelined on each (src/emqx/event-webhook.ts says why).
    expect(await emqx.getConnector('http', 'device_ops')).toMatchObject({ pool_size: 8, enable_pipelining: 8, pool_type: 'hash' });
  });

  it('then provisioning-style writes work: a user keyed by client id, rules with a final deny; absent reads as absent', async () => {
    await expect(emqx.getUser('setup-dev-1')).resolves.toBeNull();
    await expect(emqx.getAclRules({ clientid: 'setup-dev-1' })).resolves.toBeNull();
    await emqx.putAclRules({ clientid: 'setup-dev-1' }, [
      { topic: 'devices/${clientid}/#', permission: 'allow', action: 'all' },
      { topic: '#', permission: 'deny', action: 'all' },
    ]);
    await expect(emqx.upsertUser({ user_id: 'setup-dev-1', password: 'pw-setup-dev-1' })).resolves.toBe('created');
    const device = await connectClient(broker.mqttUrl, { clientId: 'setup-dev-1', username: 'setup-dev-1', password: 'pw-setup-dev-1' });
    const granted = await device.subscribeAsync({ 'devices/setup-dev-1/cmd': { qos: 1 }, '#': { qos: 0 } }).catch((err: { packet?: { granted?: number[] } }) => err.packet?.granted);
    expect(Array.isArray(granted) ? granted.map((g) => (typeof g === 'number' ? g : g.qos)) : granted).toEqual([1, 128]);
    await device.endAsync();
    expect(await connectRefusal(broker.mqttUrl, { clientId: 'evil-1', username: 'setup-dev-1', password: 'pw-setup-dev-1' })).toBe(5);
    // The webhook carries the device's events to the adapter, which stores them.
    await waitFor(async () => (await history.connectionHistory('setup-dev-1', 10)).some((e) => e.event === 'connected'), { what: 'connect event stored' });
  });

  it('refuses an existing authenticator keyed by username, saying what to do', async () => {
    const set = await api.put('/authentication/password_based%3Abuilt_in_database', {
      mechanism: 'password_based',
      backend: 'built_in_database',
      user_id_type: 'username',
    });
    expect(set.status).toBe(204);
    try {
      const err = await runEmqxSetup({ webhook: false, disableFileSource: false, topic: [] }, env).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SetupFailed);
      expect((err as Error).message).toMatch(/user_id_type is username, not clientid/);
      expect((err as Error).message).toMatch(/re-provision the devices/);
      expect(byName(await runDoctor(env)).authenticator).toMatchObject({ status: 'fail', detail: expect.stringMatching(/user_id_type is username/) });
    } finally {
      await api.put('/authentication/password_based%3Abuilt_in_database', { mechanism: 'password_based', backend: 'built_in_database', user_id_type: 'clientid' });
    }
  });
});

describe('doctor after setup', () => {
  it('passes every check', async () => {
    const results = await runDoctor(env);
    expect(results.filter((r) => r.status !== 'ok')).toEqual([]);
    expect(results.map((r) => r.name)).toEqual(['emqx-api', 'authenticator', 'authz-source', 'no-match', 'webhook-rule', 'webhook-adapter', 'webhook-token', 'temporal', 'mongodb']);
  });

  it('names a wrong token', async () => {
    const results = byName(await runDoctor({ ...env, WEBHOOK_TOKEN: 'another-token-0123456789' }));
    expect(results['webhook-token']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/sends another token than WEBHOOK_TOKEN/) });
    expect(results['webhook-adapter']?.status).toBe('ok');
  });

  it('names a wrong API key and an unreachable Temporal and MongoDB', async () => {
    const results = byName(
      await runDoctor({ ...env, EMQX_API_SECRET: 'wrong-secret', TEMPORAL_ADDRESS: '127.0.0.1:1', MONGODB_URI: 'mongodb://127.0.0.1:1' }),
    );
    expect(results['emqx-api']).toMatchObject({ status: 'fail', fix: expect.stringMatching(/EMQX_API_KEY and EMQX_API_SECRET/) });
    expect(results.temporal?.status).toBe('fail');
    expect(results.mongodb?.status).toBe('fail');
  });

  it('exits non-zero from the real binary and names a missing authenticator and a stopped adapter', async () => {
    await adapter.close();
    expect((await api.delete('/authentication/password_based%3Abuilt_in_database')).status).toBe(204);
    const run = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'src/starter/cli/main.ts'), ...args], {
          env: { ...process.env, DEVICE_OPS_ENV_FILE: path.join(projectRoot(), 'no-such-env-file'), ...env },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const doctor = await run(['doctor', '--json']);
    expect(doctor.code).toBe(1);
    const results = byName(JSON.parse(doctor.stdout) as CheckResult[]);
    expect(results.authenticator).toMatchObject({ status: 'fail', detail: 'no password_based:built_in_database authenticator' });
    expect(results['webhook-adapter']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/is not reachable/) });
    expect(doctor.stderr).toMatch(/checks failed: authenticator, webhook-adapter/);

    const setup = await run(['emqx', 'setup', '--no-webhook', '--json']);
    expect(setup.stderr).toBe('');
    expect(setup.code).toBe(0);
    expect(JSON.parse(setup.stdout)).toMatchObject({ authenticator: 'created', authzSource: 'unchanged', noMatch: 'unchanged' });
  });
});
