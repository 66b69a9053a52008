import { NativeConnection } from '@temporalio/worker';
import { createDataConverter } from '../../src/codec/data-converter';
import { createEmqxClient } from '../../src/emqx';
import { connectHistory } from '../../src/store';
import { createDeviceOpsWorker } from '../../src/worker';

/**
 * A device-ops worker in its own process, so a test can kill it for real (SIGKILL: no graceful
 * shutdown, in-flight activities simply vanish). Settings come from the environment the test passes;
 * prints `ready` once polling.
 */
async function main(): Promise<void> {
  const env = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is required`);
    return value;
  };
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const emqx = createEmqxClient({ baseUrl: env('EMQX_API_URL'), apiKey: env('EMQX_API_KEY'), apiSecret: env('EMQX_API_SECRET') });
  const mongo = await connectHistory(env('MONGODB_URI'), env('MONGODB_DB'));
  const worker = await createDeviceOpsWorker({
    connection,
    namespace: env('TEMPORAL_NAMESPACE'),
    taskQueue: env('TEMPORAL_TASK_QUEUE'),
    deps: { emqx, history: mongo.history },
    dataConverter: createDataConverter(env('PAYLOAD_ENCRYPTION_KEYS')),
  });
  const running = worker.run();
  console.log('ready');
  await running;
  await Promise.allSettled([mongo.close(), emqx.close(), connection.close()]);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
