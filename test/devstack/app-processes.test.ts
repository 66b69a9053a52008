import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAppProcesses, supervise, workerPolling } from '../../devstack/app-processes';
import { startBroker, type RunningBroker } from '../../devstack/broker';
import { freePort, type ServiceProcess } from '../../devstack/services';
import { projectRoot } from '../../src/config';
import { freshDatabase, stackEndpoints, uniqueName, waitFor } from '../harness';

/**
 * The dev stack's own processes (worker, webhook adapter) under supervision, as `npm run dev` runs
 * them: a SIGKILLed worker is restarted and polls its task queue again; one that keeps dying stops
 * the stack with a message naming it.
 */

let broker: RunningBroker;
let database: Awaited<ReturnType<typeof freshDatabase>>;
let services: ServiceProcess[] = [];
const logDir = mkdtempSync(path.join(tmpdir(), 'app-processes-'));

beforeAll(async () => {
  broker = await startBroker({ apiKey: 'k', apiSecret: 'test-secret-000000' });
  database = await freshDatabase('apps');
});

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop()));
  await broker?.close();
  await database?.close();
});

describe('dev stack supervision', () => {
  it('restarts a SIGKILLed worker, logging which process died', async () => {
    const { temporalAddress, namespace, mongoUri } = stackEndpoints();
    const taskQueue = uniqueName('apps');
    const webhookPort = await freePort();
    const logged: string[] = [];
    const gaveUp: string[] = [];
    const apps = await startAppProcesses({
      root: projectRoot(),
      logDir,
      host: '127.0.0.1',
      webhookPort,
      emqxApiUrl: broker.apiUrl,
      settings: {
        DEVICE_OPS_ENV_FILE: path.join(logDir, 'no-env-file'),
        TEMPORAL_ADDRESS: temporalAddress,
        TEMPORAL_NAMESPACE: namespace,
        TEMPORAL_TASK_QUEUE: taskQueue,
        TEMPORAL_PRESENCE_TASK_QUEUE: `${taskQueue}-presence`,
        EMQX_API_URL: broker.apiUrl,
        EMQX_API_KEY: 'k',
        EMQX_API_SECRET: 'test-secret-000000',
        MONGODB_URI: mongoUri,
        MONGODB_DB: database.name,
        WEBHOOK_HOST: '127.0.0.1',
        WEBHOOK_PORT: String(webhookPort),
        WEBHOOK_TOKEN: 'apps-webhook-token-0001',
        PAYLOAD_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        WORKFLOW_BUNDLE_PATH: path.join(projectRoot(), 'dist', 'workflow-bundle.js'),
        LOG_LEVEL: 'WARN',
      },
      supervision: { backoffMs: 200, log: (m) => logged.push(m), onGiveUp: (m) => gaveUp.push(m) },
    });
    services = apps.services;
    const worker = apps.services.find((s) => s.name === 'worker')!;
    const firstPid = worker.child.pid;
    const killedAt = Date.now();
    worker.child.kill('SIGKILL');

    await waitFor(() => logged.some((m) => /^worker restarted$/.test(m)), { timeoutMs: 180_000, what: 'the worker to be restarted' });
    expect(logged[0]).toMatch(/^worker was killed by SIGKILL; restarting in 0\.2s \(restart 1 of 5/);
    expect(worker.child.pid).not.toBe(firstPid);
    expect(await workerPolling(temporalAddress, namespace, taskQueue, killedAt)).toBe(true);
    expect(gaveUp).toEqual([]);
  }, 240_000);

  it('gives up after the restart limit, naming the process', async () => {
    const logged: string[] = [];
    let gaveUp = '';
    const start = (): Promise<ServiceProcess> =>
      Promise.resolve().then(async () => {
        const { spawn } = await import('node:child_process');
        // A process that dies at once, as a worker with a broken configuration would.
        const child = spawn(process.execPath, ['-e', 'process.exit(3)']);
        return { name: 'flaky', child, logFile: path.join(logDir, 'flaky.log'), stop: () => Promise.resolve() };
      });
    const flaky = await supervise(start, { maxRestarts: 2, backoffMs: 10, log: (m) => logged.push(m), onGiveUp: (m) => (gaveUp = m) });
    await waitFor(() => gaveUp, { timeoutMs: 30_000, what: 'supervision to give up' });
    expect(logged.filter((m) => /^flaky exited with code 3; restarting/.test(m))).toHaveLength(2);
    expect(gaveUp).toMatch(/^flaky exited with code 3 and has been restarted 2 times in 600s; giving up/);
    await flaky.stop();
  });
});
