import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { createDataConverter } from '../codec/data-converter';
import { loadConfig, temporalConnectionOptions } from '../config';
import { connectHistory } from '../store';
import { presenceTrackingFromConfig } from '../temporal/presence-delivery';
import { adapterMongoOptions, createWebhookAdapter } from './adapter';

/** `npm run webhook`: the EMQX webhook adapter against the configured MongoDB and Temporal. */
async function main(): Promise<void> {
  const config = loadConfig(['temporal', 'mongo', 'webhook', 'codec', 'presence', 'jobs']);
  const logger = pino({
    level: (process.env.LOG_LEVEL ?? 'info').toLowerCase(),
    redact: { paths: ['req.headers.authorization', 'req.headers["x-emqx-token"]'], remove: true },
  });
  // Lazy: the adapter starts and keeps accepting into the inbox while Temporal is still unreachable.
  const connection = Connection.lazy(temporalConnectionOptions(config.temporal));
  const temporal = new Client({
    connection,
    namespace: config.temporal.TEMPORAL_NAMESPACE,
    dataConverter: createDataConverter(config.codec.PAYLOAD_ENCRYPTION_KEYS),
  });
  const storeTimeoutMs = config.webhook.WEBHOOK_STORE_TIMEOUT;
  const mongo = await connectHistory(config.mongo.MONGODB_URI, config.mongo.MONGODB_DB, adapterMongoOptions(storeTimeoutMs));
  const adapter = createWebhookAdapter({
    history: mongo.history,
    temporal,
    // Device presence workflows live on their own queue (docs/task-queues.md).
    taskQueue: config.temporal.TEMPORAL_PRESENCE_TASK_QUEUE,
    token: config.webhook.WEBHOOK_TOKEN,
    deviceTopics: config.jobs,
    bodyLimit: config.webhook.WEBHOOK_BODY_LIMIT,
    inboxLimit: config.webhook.WEBHOOK_INBOX_LIMIT,
    storeTimeoutMs,
    connections: {
      maxConnections: config.webhook.WEBHOOK_MAX_CONNECTIONS,
      idleTimeoutMs: config.webhook.WEBHOOK_IDLE_TIMEOUT,
      headersTimeoutMs: config.webhook.WEBHOOK_HEADERS_TIMEOUT,
      requestTimeoutMs: config.webhook.WEBHOOK_REQUEST_TIMEOUT,
      keepAliveTimeoutMs: config.webhook.WEBHOOK_KEEPALIVE_TIMEOUT,
    },
    relay: {
      concurrency: config.webhook.WEBHOOK_SIGNAL_CONCURRENCY,
      maxSignalEvents: config.webhook.WEBHOOK_SIGNAL_MAX_EVENTS,
      maxSignalBytes: config.webhook.WEBHOOK_SIGNAL_MAX_BYTES,
      adoptAfterMs: config.webhook.WEBHOOK_INBOX_LEASE,
      disconnectHoldMs: config.webhook.WEBHOOK_DISCONNECT_HOLD,
    },
    replyApplier: { concurrency: config.webhook.WEBHOOK_REPLY_CONCURRENCY },
    continueAsNewAfter: config.presence.PRESENCE_CONTINUE_AS_NEW_AFTER,
    tracking: presenceTrackingFromConfig(config.presence),
    logger,
  });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping: finishing requests in flight; pending events stay in the inbox');
    await adapter.close();
    await mongo.close();
    await connection.close();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stop().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
    });
  }
  try {
    const port = await adapter.listen(config.webhook.WEBHOOK_HOST, config.webhook.WEBHOOK_PORT);
    logger.info({ host: config.webhook.WEBHOOK_HOST, port, taskQueue: config.temporal.TEMPORAL_PRESENCE_TASK_QUEUE }, 'webhook adapter listening');
  } catch (err) {
    await stop();
    throw err;
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
