import path from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { request } from 'undici';
import { createEmqxClient } from '../src/emqx';
import { startProcess, type ServiceProcess } from './services';

/**
 * The project's own processes in the dev stack: the worker and the webhook adapter (each its own
 * process, as in production, logging to .devstack/logs), then the broker's connector, HTTP action
 * and rule pointed at the adapter (what `device-ops emqx setup-webhook` does), so real device
 * events flow end to end.
 */
export async function startAppProcesses(options: {
  root: string;
  logDir: string;
  host: string;
  webhookPort: number;
  settings: Record<string, string>;
  emqxApiUrl: string;
}): Promise<{ services: ServiceProcess[]; webhookUrl: string; ruleId: string }> {
  const { settings } = options;
  const env = { ...process.env, ...settings };
  const tsx = (file: string): string[] => ['--import', 'tsx', path.join(options.root, file)];
  const webhookUrl = `http://${options.host}:${options.webhookPort}/emqx/events`;
  const services: ServiceProcess[] = [];
  // Temporal remembers pollers for a while: only one seen after this start counts.
  const startedAt = Date.now();
  try {
    const [worker, webhook] = await Promise.all([
      startProcess({
        name: 'worker',
        command: process.execPath,
        args: tsx('src/worker.ts'),
        env,
        logDir: options.logDir,
        // Bundling the workflow code takes a while on the first start.
        readyTimeoutMs: 180_000,
        ready: () => workerPolling(settings.TEMPORAL_ADDRESS ?? '', settings.TEMPORAL_NAMESPACE ?? 'default', settings.TEMPORAL_TASK_QUEUE ?? 'device-ops', startedAt),
      }),
      startProcess({
        name: 'webhook',
        command: process.execPath,
        args: tsx('src/webhook/main.ts'),
        env,
        logDir: options.logDir,
        ready: async () => (await request(`http://${options.host}:${options.webhookPort}/healthz`)).statusCode === 200,
      }),
    ]);
    services.push(worker, webhook);
    const emqx = createEmqxClient({ baseUrl: options.emqxApiUrl, apiKey: settings.EMQX_API_KEY ?? '', apiSecret: settings.EMQX_API_SECRET ?? '' });
    try {
      const messageTopics = (process.env.WEBHOOK_MESSAGE_TOPICS ?? '').split(',').map((t) => t.trim()).filter(Boolean);
      const { ruleId } = await emqx.ensureEventWebhook({
        url: webhookUrl,
        token: settings.WEBHOOK_TOKEN ?? '',
        ...(messageTopics.length > 0 ? { topics: ['$events/client_connected', '$events/client_disconnected', '$events/session_subscribed', '$events/session_unsubscribed', ...messageTopics] } : {}),
      });
      return { services, webhookUrl, ruleId };
    } finally {
      await emqx.close();
    }
  } catch (err) {
    await Promise.all(services.map((s) => s.stop()));
    throw err;
  }
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
  return startProcess({
    name: 'codec-server',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(options.root, 'src/codec/main.ts')],
    env: {
      ...process.env,
      ...options.settings,
      CODEC_SERVER_HOST: options.host,
      CODEC_SERVER_PORT: String(options.port),
      CODEC_CORS_ORIGINS: `http://${options.host}:${options.uiPort},http://localhost:${options.uiPort}`,
    },
    logDir: options.logDir,
    ready: async () => (await request(`http://${options.host}:${options.port}/healthz`)).statusCode === 200,
  });
}
