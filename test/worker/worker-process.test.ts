import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failureConverterPath } from '../../src/codec/data-converter';
import { projectRoot } from '../../src/config';
import { kickDevice } from '../../src/workflows/device-admin';
import { workflowsPath } from '../../src/worker';
import { freePort } from '../../devstack/services';
import { stackEndpoints, uniqueName, waitFor } from '../harness';
import { API_KEY, API_SECRET, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;
let dir: string;
let bundlePath: string;
let bundleCode: string;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-worker-'));
  bundlePath = path.join(dir, 'workflow-bundle.js');
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), failureConverterPath: failureConverterPath() });
  bundleCode = code;
  writeFileSync(bundlePath, code);
});

afterAll(async () => {
  await env?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function startWorkerProcess(taskQueue: string, metricsAddress: string): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const { temporalAddress, mongoUri } = stackEndpoints();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'src/worker.ts')], {
    env: {
      ...process.env,
      DEVICE_OPS_ENV_FILE: path.join(dir, 'none'),
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_TASK_QUEUE: taskQueue,
      TEMPORAL_PRESENCE_TASK_QUEUE: `${taskQueue}-presence`,
      EMQX_API_URL: env.broker.apiUrl,
      EMQX_API_KEY: API_KEY,
      EMQX_API_SECRET: API_SECRET,
      EMQX_REQUEST_TIMEOUT: '20s',
      MONGODB_URI: mongoUri,
      MONGODB_DB: env.dbName,
      PAYLOAD_ENCRYPTION_KEYS: env.keys,
      WORKFLOW_BUNDLE_PATH: bundlePath,
      WORKER_SHUTDOWN_GRACE: '20s',
      WORKER_METRICS_ADDRESS: metricsAddress,
    },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

describe('the worker process', () => {
  it('bundles workflow code without zod (its module code would run again at every workflow start)', () => {
    expect(bundleCode).toContain('runCampaign');
    expect(bundleCode).not.toMatch(/node_modules\/zod\//);
  });

  it('runs from the prebuilt bundle on the Node the suite runs under, logs JSON, and on SIGTERM lets the running activity finish, then exits 0', async () => {
    const taskQueue = uniqueName('worker-process');
    const metricsAddress = `127.0.0.1:${await freePort()}`;
    const worker = startWorkerProcess(taskQueue, metricsAddress);
    try {
      await waitFor(() => worker.output().includes('"msg":"worker polling"'), { timeoutMs: 30_000, what: `worker start: ${worker.output()}` });
      const lines = worker.output().split('\n').filter((l) => l.trim() !== '');
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(JSON.parse(line)).toHaveProperty('level');
      // The worker (Temporal core bridge, mongodb driver, every native module) runs on the Node the
      // suite runs under: .ci/run puts Node 22 first on PATH, so in CI this is Node 22.
      const polling = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'worker polling');
      expect(polling.node).toBe(process.version);
      expect(worker.output()).not.toContain('Workflow bundle created'); // no webpack run: the prebuilt bundle was used
      // Temporal runtime metrics for Prometheus.
      const metrics = await waitFor(async () => {
        const text = await (await fetch(`http://${metricsAddress}/metrics`)).text();
        return text.includes('temporal_') ? text : null;
      }, { what: 'Prometheus metrics' });
      expect(metrics).toMatch(/^temporal_\w+/m);

      env.broker.faults.set({ restLatencyMs: 3_000 });
      const handle = await env.temporal.workflow.start(kickDevice, { workflowId: uniqueName('kick/slow'), taskQueue, args: [{ clientId: 'nobody' }] });
      await waitFor(async () => ((await handle.describe()).raw.pendingActivities ?? []).some((a) => Number(a.state) === 2), {
        timeoutMs: 15_000,
        what: 'the activity to start',
      });
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);

      const history = await handle.fetchHistory();
      const types = (history.events ?? []).map((e) => Number(e.eventType));
      // EVENT_TYPE_ACTIVITY_TASK_COMPLETED = 12: the in-flight EMQX call finished before the exit.
      expect(types).toContain(12);
    } finally {
      env.broker.faults.reset();
      if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
      await env.temporal.schedule.getHandle('broker-stats').delete().catch(() => undefined);
    }
  });
});
