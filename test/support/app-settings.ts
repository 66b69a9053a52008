import path from 'node:path';
import { startAppProcesses, type AppProcesses, type SupervisionOptions } from '../../devstack/app-processes';
import { projectRoot } from '../../src/config';
import { stackEndpoints } from '../harness';

/**
 * The environment of the dev stack's own processes (devstack/app-processes.ts: workers, webhook
 * adapters) for a test: the shared Temporal and FerretDB, the test's broker, database and task
 * queue, the prebuilt workflow bundle (restarts take seconds, not a webpack run), no .stack-state/env.
 */
export function appSettings(options: {
  logDir: string;
  taskQueue: string;
  dbName: string;
  webhookPort: number;
  emqxApiUrl: string;
  apiKey: string;
  apiSecret: string;
  keys: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  const { temporalAddress, namespace, mongoUri } = stackEndpoints();
  return {
    DEVICE_OPS_ENV_FILE: path.join(options.logDir, 'no-env-file'),
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: options.taskQueue,
    TEMPORAL_PRESENCE_TASK_QUEUE: `${options.taskQueue}-presence`,
    EMQX_API_URL: options.emqxApiUrl,
    EMQX_API_KEY: options.apiKey,
    EMQX_API_SECRET: options.apiSecret,
    MONGODB_URI: mongoUri,
    MONGODB_DB: options.dbName,
    WEBHOOK_HOST: '127.0.0.1',
    WEBHOOK_PORT: String(options.webhookPort),
    WEBHOOK_TOKEN: 'apps-webhook-token-0001',
    PAYLOAD_ENCRYPTION_KEYS: options.keys,
    WORKFLOW_BUNDLE_PATH: path.join(projectRoot(), 'dist', 'workflow-bundle.js'),
    LOG_LEVEL: 'WARN',
    ...options.extra,
  };
}

/** The dev stack's processes for a test, as `npm run dev` starts them (`adapters` behind the round-robin proxy). */
export function startTestApps(options: Parameters<typeof appSettings>[0] & { supervision: SupervisionOptions; adapters?: number; workers?: number }): Promise<AppProcesses> {
  return startAppProcesses({
    root: projectRoot(),
    logDir: options.logDir,
    host: '127.0.0.1',
    webhookPort: options.webhookPort,
    emqxApiUrl: options.emqxApiUrl,
    settings: appSettings(options),
    supervision: options.supervision,
    ...(options.adapters ? { adapters: options.adapters } : {}),
    ...(options.workers ? { workers: options.workers } : {}),
  });
}
