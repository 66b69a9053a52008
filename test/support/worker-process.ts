import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../src/config';
import { stackEndpoints } from '../harness';
import { API_KEY, API_SECRET, type DeviceOpsTestEnv } from './device-ops-env';

/**
 * Starts a device-ops worker in its own process (test/support/campaign-worker-process.ts) on
 * `taskQueue`, wired to the env's broker, database and keys; resolves once it polls. The process
 * can be killed for real, and a crash of it shows as an exit instead of taking the test along.
 */
export async function startWorkerProcess(env: DeviceOpsTestEnv, taskQueue: string): Promise<ChildProcess> {
  const { temporalAddress, namespace, mongoUri } = stackEndpoints();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('test', 'support', 'campaign-worker-process.ts')], {
    cwd: projectRoot(),
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_NAMESPACE: namespace,
      TEMPORAL_TASK_QUEUE: taskQueue,
      EMQX_API_URL: env.broker.apiUrl,
      EMQX_API_KEY: API_KEY,
      EMQX_API_SECRET: API_SECRET,
      MONGODB_URI: mongoUri,
      MONGODB_DB: env.dbName,
      PAYLOAD_ENCRYPTION_KEYS: env.keys,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker process exited with ${code}: ${output.slice(-500)}`)));
  });
  return child;
}
