import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type LogEntry, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities';
import type { PresenceSettings } from './activities/presence';
import { createDataConverter, failureConverterPath } from './codec/data-converter';
import { loadConfig, projectRoot, temporalConnectionOptions, type Config } from './config';
import { createEmqxClientFromConfig } from './emqx';
import { mqttPublisherFromConfig } from './emqx/mqtt-publisher';
import { connectHistory } from './store';
import { startRetentionSweeps } from './store/retention';
import { presenceTrackingFromConfig } from './temporal/presence-delivery';
import { ensurePresenceReconcileSchedule, ensureStatsSchedule } from './temporal/schedules';

/** The workflow entry point, from src (tsx, tests) or dist (built). */
export function workflowsPath(): string {
  for (const file of ['index.ts', 'index.js']) {
    const candidate = path.join(__dirname, 'workflows', file);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`no workflow entry point in ${path.join(__dirname, 'workflows')}`);
}

/**
 * Production runs the prebuilt bundle (WORKFLOW_BUNDLE_PATH, or dist/workflow-bundle.js when running
 * from dist); development and tests bundle from source at start.
 */
export const DEFAULT_BUNDLE_PATH = path.join(projectRoot(), 'dist', 'workflow-bundle.js');

function workflowSource(bundlePath: string | undefined): Pick<WorkerOptions, 'workflowsPath' | 'workflowBundle'> {
  const prebuilt = bundlePath ?? (__dirname.includes(`${path.sep}dist${path.sep}`) ? DEFAULT_BUNDLE_PATH : undefined);
  if (prebuilt) {
    if (!existsSync(prebuilt)) throw new Error(`WORKFLOW_BUNDLE_PATH: ${prebuilt} does not exist (run npm run build)`);
    return { workflowBundle: { codePath: prebuilt } };
  }
  return { workflowsPath: workflowsPath() };
}

/** Builds the device-ops worker; tests call it with their own connection, task queue and dependencies. */
export async function createDeviceOpsWorker(options: {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  dataConverter: DataConverter;
  bundlePath?: string;
  overrides?: Partial<WorkerOptions>;
}): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    ...(options.overrides?.workflowBundle ? {} : workflowSource(options.bundlePath)),
    activities: createActivities(options.deps),
    dataConverter: options.dataConverter,
    ...options.overrides,
  });
}

/** One JSON object per line on stdout, for log shippers. Metadata never carries secrets (see activities). */
function jsonLog(entry: LogEntry): void {
  const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
  const meta = Object.fromEntries(
    Object.entries(entry.meta ?? {}).map(([k, v]) => [k, v instanceof Error ? { name: v.name, message: v.message } : v]),
  );
  process.stdout.write(`${JSON.stringify({ time, level: entry.level.toLowerCase(), msg: entry.message, ...meta })}\n`);
}

export type WorkerRole = 'operations' | 'presence';

/**
 * The task queues this process polls, with their own concurrency limits, so a connect storm on the
 * presence queue never holds the slots that provisioning and campaigns need (docs/task-queues.md).
 */
export function workerQueues(config: Config<'temporal' | 'worker'>): { role: WorkerRole; taskQueue: string; maxWorkflowTasks: number; maxActivities: number }[] {
  const { temporal, worker } = config;
  const queues = [...new Set(worker.WORKER_ROLES)].map((role) =>
    role === 'operations'
      ? { role, taskQueue: temporal.TEMPORAL_TASK_QUEUE, maxWorkflowTasks: worker.WORKER_OPERATIONS_MAX_WORKFLOW_TASKS, maxActivities: worker.WORKER_OPERATIONS_MAX_ACTIVITIES }
      : { role, taskQueue: temporal.TEMPORAL_PRESENCE_TASK_QUEUE, maxWorkflowTasks: worker.WORKER_PRESENCE_MAX_WORKFLOW_TASKS, maxActivities: worker.WORKER_PRESENCE_MAX_ACTIVITIES },
  );
  // Both names set to one queue: one worker serves both roles, with the operations limits.
  return queues.filter((q, i) => queues.findIndex((other) => other.taskQueue === q.taskQueue) === i);
}

/** The workflow code for several workers of one process: the prebuilt bundle, or one bundled from source now. */
export async function sharedWorkflowBundle(bundlePath?: string): Promise<Pick<WorkerOptions, 'workflowsPath' | 'workflowBundle'>> {
  const source = workflowSource(bundlePath);
  if (source.workflowBundle) return source;
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), failureConverterPath: failureConverterPath(), logger: new DefaultLogger('WARN') });
  return { workflowBundle: { code } };
}

/** The ALARM_* variables as the presence activities take them. */
export function presenceSettings(alarm: Config<'alarm'>['alarm'], presence?: Config<'presence'>['presence']): PresenceSettings {
  return {
    ...(presence ? { continueAsNewAfter: presence.PRESENCE_CONTINUE_AS_NEW_AFTER, tracking: presenceTrackingFromConfig(presence) } : {}),
    defaults: {
      graceMs: alarm.ALARM_GRACE_PERIOD,
      escalationMs: alarm.ALARM_ESCALATION_STEPS,
      flapThreshold: alarm.ALARM_FLAP_THRESHOLD,
      flapWindowMs: alarm.ALARM_FLAP_WINDOW,
    },
    ...(alarm.ALARM_WEBHOOK_URL ? { alarmWebhookUrl: alarm.ALARM_WEBHOOK_URL } : {}),
  };
}

async function main(): Promise<void> {
  const config = loadConfig(['temporal', 'emqx', 'mongo', 'codec', 'worker', 'stats', 'alarm', 'presence', 'campaign', 'retention']);
  Runtime.install({
    logger: new DefaultLogger(config.worker.LOG_LEVEL, jsonLog),
    telemetryOptions: config.worker.WORKER_METRICS_ADDRESS
      ? { metrics: { prometheus: { bindAddress: config.worker.WORKER_METRICS_ADDRESS } } }
      : {},
    shutdownSignals: ['SIGINT', 'SIGTERM'],
  });
  const log = Runtime.instance().logger;
  const dataConverter = createDataConverter(config.codec.PAYLOAD_ENCRYPTION_KEYS);
  const connectionOptions = temporalConnectionOptions(config.temporal);
  const nativeConnection = await NativeConnection.connect(connectionOptions);
  const connection = await Connection.connect(connectionOptions);
  const emqx = createEmqxClientFromConfig(config.emqx);
  const mongo = await connectHistory(config.mongo.MONGODB_URI, config.mongo.MONGODB_DB);
  const mqttPublisher = mqttPublisherFromConfig(config.campaign, `device-ops-campaigns-${hostname()}-${process.pid}`);
  const retention = startRetentionSweeps(
    mongo.history.db,
    { eventsMs: config.retention.RETENTION_EVENTS, statsMs: config.retention.RETENTION_STATS, deadLettersMs: config.retention.RETENTION_DEAD_LETTERS },
    config.retention.RETENTION_SWEEP_INTERVAL,
    log,
  );
  try {
    const client = new Client({ connection, namespace: config.temporal.TEMPORAL_NAMESPACE, dataConverter });
    const queues = workerQueues(config);
    if (queues.some((q) => q.role === 'operations')) {
      const stats = await ensureStatsSchedule(client, { taskQueue: config.temporal.TEMPORAL_TASK_QUEUE, intervalMs: config.stats.STATS_SNAPSHOT_INTERVAL });
      log.info(`statistics schedule ${stats}`, { intervalMs: config.stats.STATS_SNAPSHOT_INTERVAL });
    }
    if (queues.some((q) => q.role === 'presence')) {
      const reconcile = await ensurePresenceReconcileSchedule(client, {
        taskQueue: config.temporal.TEMPORAL_PRESENCE_TASK_QUEUE,
        intervalMs: config.presence.PRESENCE_RECONCILE_INTERVAL,
      });
      log.info(`presence reconciliation schedule ${reconcile}`, { intervalMs: config.presence.PRESENCE_RECONCILE_INTERVAL });
    }

    // One bundle for both workers: webpack runs once per process, not once per queue.
    const bundle = await sharedWorkflowBundle(config.worker.WORKFLOW_BUNDLE_PATH);
    const workers = await Promise.all(
      queues.map((queue) =>
        createDeviceOpsWorker({
          connection: nativeConnection,
          namespace: config.temporal.TEMPORAL_NAMESPACE,
          taskQueue: queue.taskQueue,
          deps: { emqx, history: mongo.history, presence: presenceSettings(config.alarm, config.presence), ...(mqttPublisher ? { mqttPublisher } : {}) },
          dataConverter,
          // SIGTERM: stop polling, let in-flight activities finish within the grace time, then exit.
          overrides: {
            ...bundle,
            shutdownGraceTime: config.worker.WORKER_SHUTDOWN_GRACE,
            maxConcurrentWorkflowTaskExecutions: queue.maxWorkflowTasks,
            maxConcurrentActivityTaskExecutions: queue.maxActivities,
            ...(config.worker.WORKER_MAX_CACHED_WORKFLOWS !== undefined ? { maxCachedWorkflows: config.worker.WORKER_MAX_CACHED_WORKFLOWS } : {}),
          },
        }),
      ),
    );
    for (const queue of queues) log.info('worker polling', { role: queue.role, taskQueue: queue.taskQueue, address: config.temporal.TEMPORAL_ADDRESS, node: process.version });
    // Runtime.install's shutdown signals stop every worker; one failing stops the others so the process exits.
    await Promise.all(
      workers.map((worker) =>
        worker.run().catch((err: unknown) => {
          for (const other of workers) if (other.getState() === 'RUNNING') other.shutdown();
          throw err;
        }),
      ),
    );
    log.info('worker stopped');
  } finally {
    retention.stop();
    await mqttPublisher?.close();
    await mongo.close();
    await emqx.close();
    await connection.close();
    await nativeConnection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
