import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { ensureFerretDb, ensureTemporalCli, installAll } from '../devstack/binaries';
import { startBroker, type RunningBroker } from '../devstack/broker';
import { freePort, startFerretDb, startTemporal } from '../devstack/services';
import { createDataConverter } from '../src/codec/data-converter';
import { createEmqxClient, type EmqxClient } from '../src/emqx';
import { connectHistory, type History } from '../src/store';
import { DeviceOps } from '../src/starter/client/index';
import { createDeviceOpsWorker } from '../src/worker';

/** A private, complete stack for one benchmark (or history-recording) run, on free ports; `close()` stops everything. */
export interface BenchStack {
  broker: RunningBroker;
  emqx: EmqxClient;
  history: History;
  ops: DeviceOps;
  temporal: Client;
  /** Absent with `inProcessWorker: false` (the benchmark runs its own worker process). */
  worker?: Worker;
  /** Process ids of the Temporal dev server and FerretDB (for CPU accounting). */
  pids: { temporal: number | undefined; ferretdb: number | undefined };
  /** What a worker or adapter process needs to join this stack, as environment variables. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startBenchStack(options: { payloadEncryptionKeys?: string; inProcessWorker?: boolean } = {}): Promise<BenchStack> {
  const progress = (m: string): void => console.error(`[bench] ${m}`);
  const [cli, ferret] = await installAll([ensureTemporalCli(progress), ensureFerretDb(progress)]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-'));
  const host = '127.0.0.1';
  const [temporalServer, mongoServer] = await Promise.all([
    startTemporal({ binary: cli, host, port: await freePort(), namespace: 'default', logDir: dir }),
    startFerretDb({ binary: ferret, host, port: await freePort(), dataDir: path.join(dir, 'ferretdb'), logDir: dir }),
  ]);
  const apiKey = 'bench';
  const apiSecret = randomBytes(12).toString('hex');
  const broker = await startBroker({ apiKey, apiSecret });
  const emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey, apiSecret });
  const mongo = await connectHistory(mongoServer.uri, 'bench');
  const keys = options.payloadEncryptionKeys ?? `bench:${randomBytes(32).toString('base64')}`;
  const dataConverter = createDataConverter(keys);
  const nativeConnection = await NativeConnection.connect({ address: temporalServer.address });
  const taskQueue = 'bench';
  const worker =
    options.inProcessWorker === false
      ? undefined
      : await createDeviceOpsWorker({
          connection: nativeConnection,
          namespace: 'default',
          taskQueue,
          deps: { emqx, history: mongo.history },
          dataConverter,
        });
  const running = worker?.run();
  const connection = await Connection.connect({ address: temporalServer.address });
  const temporal = new Client({ connection, dataConverter });
  const ops = new DeviceOps({ temporal, taskQueue, emqx, history: mongo.history });
  return {
    broker,
    emqx,
    history: mongo.history,
    ops,
    temporal,
    ...(worker ? { worker } : {}),
    pids: { temporal: temporalServer.child.pid, ferretdb: mongoServer.child.pid },
    env: {
      TEMPORAL_ADDRESS: temporalServer.address,
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: taskQueue,
      // One queue for both roles: the benchmark's one worker serves presence and operations alike.
      TEMPORAL_PRESENCE_TASK_QUEUE: taskQueue,
      EMQX_API_URL: broker.apiUrl,
      EMQX_API_KEY: apiKey,
      EMQX_API_SECRET: apiSecret,
      MONGODB_URI: mongoServer.uri,
      MONGODB_DB: 'bench',
      PAYLOAD_ENCRYPTION_KEYS: keys,
    },
    async close() {
      worker?.shutdown();
      await running;
      await nativeConnection.close();
      await connection.close();
      await emqx.close();
      await mongo.close();
      await broker.close();
      await Promise.all([temporalServer.stop(), mongoServer.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}
