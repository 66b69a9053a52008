import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, type Worker, type WorkerOptions } from '@temporalio/worker';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type RunningBroker } from '../../devstack/broker';
import type { PresenceSettings } from '../../src/activities/presence';
import { createDataConverter } from '../../src/codec/data-converter';
import { createEmqxClient, type EmqxClient } from '../../src/emqx';
import { History } from '../../src/store';
import { DeviceOps } from '../../src/starter/client/index';
import { createDeviceOpsWorker, sharedWorkflowBundle } from '../../src/worker';
import { freshDatabase, stackEndpoints, temporalClient, uniqueName, workerConnection } from '../harness';

/**
 * A complete device-ops system for one test file, all real: its own EMQX-compatible broker, a fresh
 * database on the shared FerretDB, two workers on their own task queues of the shared Temporal server
 * (operations and presence, as src/worker.ts runs them), and the client library wired to them.
 */
export interface DeviceOpsTestEnv {
  broker: RunningBroker;
  emqx: EmqxClient;
  history: History;
  ops: DeviceOps;
  temporal: Client;
  /** The operations queue (TEMPORAL_TASK_QUEUE): what `ops` starts provisioning and campaigns on. */
  taskQueue: string;
  /** The presence queue (TEMPORAL_PRESENCE_TASK_QUEUE), polled by a worker of its own. */
  presenceTaskQueue: string;
  keys: string;
  dbName: string;
  /**
   * Starts another worker on another task queue (a fresh one unless named) with its own EMQX client
   * (e.g. a faulty one). `stop` rejects if the worker failed.
   */
  extraWorker(emqx: EmqxClient, options?: { taskQueue?: string }): Promise<{ ops: DeviceOps; stop(): Promise<void> }>;
  /** Each worker's task queue and state, with the error it failed with (for failure messages). */
  workerStates(): string[];
  close(): Promise<void>;
}

export const API_KEY = 'test-key';
export const API_SECRET = 'test-secret-not-for-production';

/** The presence worker's limits in tests (WORKER_PRESENCE_MAX_WORKFLOW_TASKS, WORKER_PRESENCE_MAX_ACTIVITIES). */
export const PRESENCE_WORKER_LIMITS = { maxConcurrentWorkflowTaskExecutions: 8, maxConcurrentActivityTaskExecutions: 16 } satisfies Partial<WorkerOptions>;

let runtimeInstalled = false;

/** Worker logs at WARN, so test output shows problems, not every state change. */
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

/** `temporalAddress`: a Temporal server of the file's own (one it may stop), instead of the shared one. */
export async function startDeviceOpsEnv(options: { presence?: PresenceSettings; temporalAddress?: string } = {}): Promise<DeviceOpsTestEnv> {
  quietRuntime();
  const broker = await startBroker({ apiKey: API_KEY, apiSecret: API_SECRET });
  const database = await freshDatabase('ops');
  const history = new History(database.db);
  await history.ensureIndexes();
  const emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET });
  const keys = `test:${randomBytes(32).toString('base64')}`;
  const dataConverter = createDataConverter(keys);
  const connection = await workerConnection(options.temporalAddress);
  const { connection: clientConnection, close: closeClient } = await temporalClient(options.temporalAddress);
  const temporal = new Client({ connection: clientConnection, namespace: stackEndpoints().namespace, dataConverter });

  const running: { worker: Worker; taskQueue: string; run: Promise<void>; failure?: string }[] = [];
  // Bundled once for every worker of the file.
  const bundle = await sharedWorkflowBundle();
  const launch = async (taskQueue: string, workerEmqx: EmqxClient, limits: Partial<WorkerOptions> = {}): Promise<() => Promise<void>> => {
    const worker = await createDeviceOpsWorker({
      connection,
      namespace: stackEndpoints().namespace,
      taskQueue,
      deps: { emqx: workerEmqx, history, ...(options.presence ? { presence: options.presence } : {}) },
      dataConverter,
      overrides: { ...bundle, ...limits },
    });
    const entry: (typeof running)[number] = { worker, taskQueue, run: worker.run() };
    entry.run.catch((err: unknown) => {
      entry.failure = String(err);
    });
    running.push(entry);
    return async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await entry.run;
    };
  };

  const taskQueue = uniqueName('device-ops');
  await launch(taskQueue, emqx);
  const presenceTaskQueue = `${taskQueue}-presence`;
  // A capped pool, as docs/task-queues.md sizes it: a storm's backlog waits in its queue, not in this process.
  await launch(presenceTaskQueue, emqx, PRESENCE_WORKER_LIMITS);
  const ops = new DeviceOps({ temporal, taskQueue, emqx, history });

  return {
    broker,
    emqx,
    history,
    ops,
    temporal,
    taskQueue,
    presenceTaskQueue,
    keys,
    dbName: database.name,
    async extraWorker(workerEmqx, extra = {}) {
      const queue = extra.taskQueue ?? uniqueName('device-ops-extra');
      const stop = await launch(queue, workerEmqx);
      return { ops: new DeviceOps({ temporal, taskQueue: queue, emqx: workerEmqx, history }), stop };
    },
    workerStates() {
      return running.map((r) => `${r.taskQueue}: ${r.worker.getState()}${r.failure ? ` (${r.failure})` : ''}`);
    },
    async close() {
      for (const { worker } of running) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(running.map((r) => r.run));
      await connection.close();
      await closeClient();
      await emqx.close();
      await broker.close();
      await database.close();
    },
  };
}

/** A real MQTT device; connection failures reject (no automatic reconnects). */
export async function connectDevice(broker: RunningBroker, clientId: string, username: string, password: string): Promise<MqttClient> {
  return mqtt.connectAsync(broker.mqttUrl, { clientId, username, password, reconnectPeriod: 0, connectTimeout: 5_000 });
}

/** Resolves with the next message on `topic`, or null if none arrives within `ms`. */
export function nextMessage(client: MqttClient, topic: string, ms = 3_000): Promise<string | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.removeListener('message', onMessage);
      resolve(null);
    }, ms);
    const onMessage = (t: string, payload: Buffer): void => {
      if (t !== topic) return;
      clearTimeout(timer);
      client.removeListener('message', onMessage);
      resolve(payload.toString());
    };
    client.on('message', onMessage);
  });
}

/** Sets the dev broker's fault injection through `PUT /devstack/faults`, as an operator would. */
export async function setBrokerFaults(broker: RunningBroker, patch: Record<string, number | boolean>): Promise<void> {
  const res = await fetch(new URL('/devstack/faults', broker.apiUrl), {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${API_KEY}:${API_SECRET}`).toString('base64')}` },
    body: JSON.stringify(patch),
  });
  if (res.status !== 200) throw new Error(`PUT /devstack/faults answered ${res.status}`);
}
