import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { supervise, workerPolling, type AppProcesses } from '../../devstack/app-processes';
import { startBroker, type RunningBroker } from '../../devstack/broker';
import { freePort, type ServiceProcess } from '../../devstack/services';
import { freshDatabase, stackEndpoints, uniqueName, waitFor } from '../harness';
import { startTestApps } from '../support/app-settings';

/**
 * The dev stack's own processes (worker, webhook adapter) under supervision, as `npm run dev` runs
 * them: a SIGKILLed worker is restarted and polls its task queue again; one that keeps dying stops
 * the stack with a message naming it.
 */

let broker: RunningBroker;
let database: Awaited<ReturnType<typeof freshDatabase>>;
let apps: AppProcesses | undefined;
const logDir = mkdtempSync(path.join(tmpdir(), 'app-processes-'));

beforeAll(async () => {
  broker = await startBroker({ apiKey: 'k', apiSecret: 'test-secret-000000' });
  database = await freshDatabase('apps');
});

afterAll(async () => {
  await apps?.stop();
  await broker?.close();
  await database?.close();
});

describe('dev stack supervision', () => {
  it('restarts a SIGKILLed worker, logging which process died', async () => {
    const { temporalAddress, namespace } = stackEndpoints();
    const taskQueue = uniqueName('apps');
    const webhookPort = await freePort();
    const logged: string[] = [];
    const gaveUp: string[] = [];
    apps = await startTestApps({
      logDir,
      taskQueue,
      dbName: database.name,
      webhookPort,
      emqxApiUrl: broker.apiUrl,
      apiKey: 'k',
      apiSecret: 'test-secret-000000',
      keys: `k1:${randomBytes(32).toString('base64')}`,
      supervision: { backoffMs: 200, log: (m) => logged.push(m), onGiveUp: (m) => gaveUp.push(m) },
    });
    const worker = apps.workers[0]!;
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
