import { existsSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { DataConverter } from '@temporalio/common';
import { createActivities, type ActivityDeps } from './activities';
import { createDataConverter } from './codec/data-converter';
import { loadConfig } from './config';
import { createEmqxClientFromConfig } from './emqx';
import { connectHistory } from './history';

/** The workflow entry point, from src (tsx, tests) or dist (built). */
export function workflowsPath(): string {
  for (const file of ['index.ts', 'index.js']) {
    const candidate = path.join(__dirname, 'workflows', file);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`no workflow entry point in ${path.join(__dirname, 'workflows')}`);
}

/** Builds the device-ops worker; tests call it with their own connection, task queue and dependencies. */
export async function createDeviceOpsWorker(options: {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  dataConverter: DataConverter;
  overrides?: Partial<WorkerOptions>;
}): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    workflowsPath: workflowsPath(),
    activities: createActivities(options.deps),
    dataConverter: options.dataConverter,
    ...options.overrides,
  });
}

async function main(): Promise<void> {
  const config = loadConfig(['temporal', 'emqx', 'mongo', 'codec']);
  const connection = await NativeConnection.connect({ address: config.temporal.TEMPORAL_ADDRESS });
  const emqx = createEmqxClientFromConfig(config.emqx);
  const mongo = await connectHistory(config.mongo.MONGODB_URI, config.mongo.MONGODB_DB);
  try {
    const worker = await createDeviceOpsWorker({
      connection,
      namespace: config.temporal.TEMPORAL_NAMESPACE,
      taskQueue: config.temporal.TEMPORAL_TASK_QUEUE,
      deps: { emqx, history: mongo.history },
      dataConverter: createDataConverter(config.codec.PAYLOAD_ENCRYPTION_KEYS),
    });
    console.log(`worker polling task queue ${config.temporal.TEMPORAL_TASK_QUEUE} on ${config.temporal.TEMPORAL_ADDRESS}`);
    await worker.run();
  } finally {
    await mongo.close();
    await emqx.close();
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
