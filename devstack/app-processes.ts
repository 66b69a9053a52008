import path from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { request } from 'undici';
import { createEmqxClient, DEFAULT_EVENT_TOPICS } from '../src/emqx';
import { startRoundRobinProxy, type RoundRobinProxy } from './round-robin-proxy';
import { freePort, startProcess, type ServiceProcess } from './services';

/**
 * The project's own processes in the dev stack: the workers and the webhook adapters (each its own
 * process, as in production, logging to .stack-state/logs), then the broker's connector, HTTP action
 * and rule pointed at the adapters (what `device-ops emqx setup-webhook` does), so real device
 * events flow end to end. With several adapters, each listens on a free port and a round-robin
 * TCP proxy takes `webhookPort`: EMQX's HTTP action posts to one URL.
 */
export interface AppProcesses {
  workers: ServiceProcess[];
  adapters: ServiceProcess[];
  /** In front of the adapters when there are several. */
  proxy?: RoundRobinProxy;
  webhookUrl: string;
  ruleId: string;
  stop(): Promise<void>;
}

export async function startAppProcesses(options: {
  root: string;
  logDir: string;
  host: string;
  webhookPort: number;
  settings: Record<string, string>;
  emqxApiUrl: string;
  /** What to do about a process that died: restarted with backoff, then `onGiveUp`. */
  supervision: SupervisionOptions;
  /** Webhook adapter processes (default 1). */
  adapters?: number;
  /** Worker processes (default 1). */
  workers?: number;
}): Promise<AppProcesses> {
  const { settings } = options;
  const env = { ...process.env, ...settings };
  const adapterCount = options.adapters ?? 1;
  const workerCount = options.workers ?? 1;
  const webhookUrl = `http://${options.host}:${options.webhookPort}/emqx/events`;
  // One process keeps its plain name (and log file); several are numbered.
  const numbered = (name: string, i: number, count: number): string => (count === 1 ? name : `${name}-${i + 1}`);
  const adapterPorts = adapterCount === 1 ? [options.webhookPort] : await Promise.all(Array.from({ length: adapterCount }, () => freePort()));
  const workers: ServiceProcess[] = [];
  const adapters: ServiceProcess[] = [];
  let proxy: RoundRobinProxy | undefined;
  const stop = async (): Promise<void> => {
    await proxy?.close();
    await Promise.all([...workers, ...adapters].filter((s): s is ServiceProcess => s !== undefined).map((s) => s.stop()));
  };
  try {
    await Promise.all([
      ...Array.from({ length: workerCount }, async (_, i) => {
        // By index, not completion order: worker-1 is workers[0] whichever starts first.
        workers[i] = await supervise(() => startWorkerProcess({ root: options.root, env, logDir: options.logDir, name: numbered('worker', i, workerCount) }), options.supervision);
      }),
      ...adapterPorts.map(async (port, i) => {
        const baseUrl = `http://${options.host}:${port}`;
        const start = (): Promise<ServiceProcess> =>
          startHttpProcess({ name: numbered('webhook', i, adapterCount), entry: 'src/webhook/main.ts', root: options.root, env: { ...env, WEBHOOK_PORT: String(port) }, logDir: options.logDir, baseUrl });
        adapters[i] = await supervise(start, options.supervision);
      }),
    ]);
    if (adapterCount > 1) proxy = await startRoundRobinProxy({ host: options.host, port: options.webhookPort, backends: adapterPorts });
    const emqx = createEmqxClient({ baseUrl: options.emqxApiUrl, apiKey: settings.EMQX_API_KEY ?? '', apiSecret: settings.EMQX_API_SECRET ?? '' });
    try {
      const messageTopics = (process.env.WEBHOOK_MESSAGE_TOPICS ?? '').split(',').map((t) => t.trim()).filter(Boolean);
      const { ruleId } = await emqx.ensureEventWebhook({
        url: webhookUrl,
        token: settings.WEBHOOK_TOKEN ?? '',
        ...(messageTopics.length > 0 ? { topics: [...DEFAULT_EVENT_TOPICS, ...messageTopics] } : {}),
      });
      return { workers, adapters, ...(proxy ? { proxy } : {}), webhookUrl, ruleId, stop };
    } finally {
      await emqx.close();
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface SupervisionOptions {
  /** Restarts allowed inside `windowMs` before giving up (default 5 in 10 minutes). */
  maxRestarts?: number;
  windowMs?: number;
  /** First restart delay, doubling up to `maxBackoffMs` (default 1 s, 30 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  log: (message: string) => void;
  /** Called once when a process died and cannot be (or may no longer be) restarted. */
  onGiveUp: (message: string) => void;
}

/**
 * Keeps a dev-stack process running: when it exits without being stopped (a crash, an OOM kill),
 * it is started again after a delay that doubles with each restart; after `maxRestarts` inside
 * `windowMs`, or when a restart fails, `onGiveUp` names the process and why. Without this, a dead
 * worker left `provision --wait` waiting forever.
 */
export async function supervise(start: () => Promise<ServiceProcess>, options: SupervisionOptions): Promise<ServiceProcess> {
  const maxRestarts = options.maxRestarts ?? 5;
  const windowMs = options.windowMs ?? 600_000;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  let current = await start();
  const name = current.name;
  let stopped = false;
  let restarts: number[] = [];
  let pendingRestart: { timer: NodeJS.Timeout; cancel: () => void } | undefined;
  let restarting: Promise<void> = Promise.resolve();

  const watch = (service: ServiceProcess): void => {
    service.child.once('exit', (code, signal) => {
      if (stopped) return;
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const now = Date.now();
      restarts = restarts.filter((at) => now - at < windowMs);
      if (restarts.length >= maxRestarts) {
        options.onGiveUp(`${name} ${how} and has been restarted ${restarts.length} times in ${Math.round(windowMs / 1000)}s; giving up (log ${service.logFile})`);
        return;
      }
      const delay = Math.min(maxBackoffMs, (options.backoffMs ?? 1_000) * 2 ** restarts.length);
      restarts.push(now);
      options.log(`${name} ${how}; restarting in ${(delay / 1000).toFixed(1)}s (restart ${restarts.length} of ${maxRestarts}; log ${service.logFile})`);
      restarting = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          pendingRestart = undefined;
          start().then(
            (next) => {
              current = next;
              if (stopped) return void next.stop().then(resolve, resolve);
              options.log(`${name} restarted`);
              watch(next);
              resolve();
            },
            (err: unknown) => {
              if (!stopped) options.onGiveUp(`${name} ${how} and could not be restarted: ${err instanceof Error ? err.message : String(err)}`);
              resolve();
            },
          );
        }, delay);
        pendingRestart = { timer, cancel: resolve };
      });
    });
  };
  watch(current);

  return {
    name,
    get child() {
      return current.child;
    },
    get logFile() {
      return current.logFile;
    },
    async stop() {
      stopped = true;
      if (pendingRestart) {
        clearTimeout(pendingRestart.timer);
        pendingRestart.cancel();
      }
      await restarting;
      await current.stop();
    },
  };
}

/** The worker as its own process (src/worker.ts through tsx), ready once it polls its task queue. */
export function startWorkerProcess(options: { root: string; env: NodeJS.ProcessEnv; logDir: string; nodeArgs?: string[]; name?: string }): Promise<ServiceProcess> {
  const { env } = options;
  const address = env.TEMPORAL_ADDRESS ?? '';
  const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
  // Temporal remembers pollers for a while: only one seen after this start counts.
  const startedAt = Date.now();
  return startProcess({
    name: options.name ?? 'worker',
    command: process.execPath,
    args: [...(options.nodeArgs ?? []), '--import', 'tsx', path.join(options.root, 'src/worker.ts')],
    env,
    logDir: options.logDir,
    // Bundling the workflow code takes a while on the first start.
    readyTimeoutMs: 180_000,
    // Either of its queues: with several workers, Temporal's describe of an idle queue (its root
    // partition) may go a long time without showing a new poller; the presence queue is busy.
    ready: async () =>
      (await workerPolling(address, namespace, env.TEMPORAL_TASK_QUEUE ?? 'device-ops', startedAt)) ||
      workerPolling(address, namespace, env.TEMPORAL_PRESENCE_TASK_QUEUE ?? 'device-ops-presence', startedAt),
  });
}

/** An HTTP service from a TypeScript entry (webhook adapter, codec server...), ready when `/healthz` answers 200. */
export function startHttpProcess(options: { name: string; entry: string; root: string; env: NodeJS.ProcessEnv; logDir: string; baseUrl: string }): Promise<ServiceProcess> {
  return startProcess({
    name: options.name,
    command: process.execPath,
    args: ['--import', 'tsx', path.join(options.root, options.entry)],
    env: options.env,
    logDir: options.logDir,
    // Loading the TypeScript entry through tsx takes a while on a busy machine.
    readyTimeoutMs: 120_000,
    ready: async () => (await request(`${options.baseUrl}/healthz`)).statusCode === 200,
  });
}

export async function workerPolling(address: string, namespace: string, taskQueue: string, since: number): Promise<boolean> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    const { pollers } = await connection.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: proto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    return (pollers ?? []).some((p) => Number(p.lastAccessTime?.seconds ?? 0) * 1_000 >= since - 1_000);
  } finally {
    await connection.close();
  }
}

/** The codec server, so the local Temporal UI shows decrypted payloads (no token: localhost only). */
export async function startCodecServer(options: {
  root: string;
  logDir: string;
  host: string;
  port: number;
  uiPort: number;
  settings: Record<string, string>;
}): Promise<ServiceProcess> {
  return startHttpProcess({
    name: 'codec-server',
    entry: 'src/codec/main.ts',
    root: options.root,
    baseUrl: `http://${options.host}:${options.port}`,
    env: {
      ...process.env,
      ...options.settings,
      CODEC_SERVER_HOST: options.host,
      CODEC_SERVER_PORT: String(options.port),
      CODEC_CORS_ORIGINS: `http://${options.host}:${options.uiPort},http://localhost:${options.uiPort}`,
      CODEC_ALLOWED_HOSTS: [...new Set([options.host, 'localhost', '127.0.0.1', '::1'])].join(','),
    },
    logDir: options.logDir,
  });
}
