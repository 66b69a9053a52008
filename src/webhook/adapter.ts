import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { MongoClientOptions } from 'mongodb';
import pino, { type Logger } from 'pino';
import type { PresenceEvent } from '../domain/presence';
import type { History } from '../store';
import { CampaignStore } from '../store/campaigns';
import { PresenceDelivery, type PresenceTracking } from '../temporal/presence-delivery';
import { InboxSink } from './event-sink';
import { WebhookMetrics } from './metrics';
import { DEFAULT_RELAY_OPTIONS, PresenceRelay, type RelayOptions } from './relay';
import { buildServer, type ConnectionLimits } from './server';
import { SignalThrottle } from './signal-throttle';
import { WaitingCampaigns } from '../store/waiting-campaigns';
import { DEFAULT_DEVICE_TOPICS, type DeviceTopics } from '../domain/device-topics';
import { JobExecutionStore } from '../store/job-executions';
import { DeviceReplyStore } from '../store/job-replies';
import { WaitingCommands } from '../store/waiting-commands';
import { wakeCommands } from '../temporal/command-wake';
import { DeviceReplies, replyApplyBatch } from './replies';
import { ReplyApplier, type ReplyApplierOptions } from './reply-applier';

/** Deadline of one signal-with-start: a hung Temporal call must not hold a device's queue. */
const SIGNAL_DEADLINE_MS = 10_000;
const CAMPAIGN_REFRESH_MS = 5_000;

/**
 * MongoDB client settings for the adapter: a hung MongoDB fails operations instead of holding them
 * and the requests waiting on them. Requests get 503 after `storeTimeoutMs` (InboxSink); a
 * connection that stays silent is given up soon after, and a new one must answer quickly.
 */
export function adapterMongoOptions(storeTimeoutMs: number): MongoClientOptions {
  return { serverSelectionTimeoutMS: storeTimeoutMs, connectTimeoutMS: storeTimeoutMs, socketTimeoutMS: storeTimeoutMs * 2 };
}

export interface WebhookAdapterOptions {
  history: History;
  temporal: Client;
  /** The presence task queue (TEMPORAL_PRESENCE_TASK_QUEUE) the device workflows are started on. */
  taskQueue: string;
  token: string;
  bodyLimit?: number;
  inboxLimit?: number;
  /** A request whose events MongoDB has not stored within this gets 503 (default 5 s). */
  storeTimeoutMs?: number;
  connections?: Partial<ConnectionLimits>;
  relay?: Partial<RelayOptions>;
  /** Deadline of one signal-with-start (default 10 s). */
  signalDeadlineMs?: number;
  /** Passed to device workflows this adapter starts (tests force continue-as-new with it). */
  continueAsNewAfter?: number;
  /** How long the list of campaigns waiting for devices is cached (default 5 s). */
  campaignRefreshMs?: number;
  /** Which clients get a device workflow (default: provisioned devices only; docs/presence.md). */
  tracking?: PresenceTracking;
  /** The background applier of device replies (src/webhook/reply-applier.ts). */
  replyApplier?: Partial<ReplyApplierOptions>;
  /** The status and reply topics devices answer on (JOB_STATUS_TOPIC, COMMAND_REPLY_TOPIC; docs/jobs.md). */
  deviceTopics?: DeviceTopics;
  logger?: Logger;
}

export interface WebhookAdapter {
  app: FastifyInstance;
  metrics: WebhookMetrics;
  relay: PresenceRelay;
  applier: ReplyApplier;
  /** Starts the relay's sweep (delivering what is pending) and listens. Returns the bound port. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

/** The webhook adapter wired to MongoDB and Temporal: server, durable inbox, relay. */
export function createWebhookAdapter(options: WebhookAdapterOptions): WebhookAdapter {
  const logger = options.logger ?? pino({ level: 'silent' });
  const metrics = new WebhookMetrics();
  const relayOptions = { ...DEFAULT_RELAY_OPTIONS, ...options.relay };
  const waiting = new WaitingCampaigns(new CampaignStore(options.history.db), options.campaignRefreshMs ?? CAMPAIGN_REFRESH_MS);
  /** A connect tells the campaigns waiting for the device. */
  const campaignsFor = (clientId: string, events: PresenceEvent[]): Promise<string[]> =>
    events.some((e) => e.kind === 'connected')
      ? waiting.forDeviceOrNone(clientId, (err) => logger.warn({ err, clientId }, 'could not look up campaigns waiting for the device'))
      : Promise.resolve([]);
  const delivery = new PresenceDelivery({
    temporal: options.temporal,
    taskQueue: options.taskQueue,
    history: options.history,
    ...(options.tracking ? { tracking: options.tracking } : {}),
    ...(options.continueAsNewAfter ? { continueAsNewAfter: options.continueAsNewAfter } : {}),
  });
  const waitingCommands = new WaitingCommands(options.history.db, options.campaignRefreshMs ?? CAMPAIGN_REFRESH_MS);
  const relay = new PresenceRelay(
    {
      deliver: async (clientId, events) => {
        const campaigns = await campaignsFor(clientId, events);
        const deadline = (): number => Date.now() + (options.signalDeadlineMs ?? SIGNAL_DEADLINE_MS);
        await options.temporal.withDeadline(deadline(), () => delivery.deliver(clientId, events, campaigns));
        // Then the commands waiting for the device (src/temporal/command-wake.ts); a failure leaves them to their rechecks.
        if (events.some((e) => e.kind === 'connected')) {
          await options.temporal.withDeadline(deadline(), () => wakeCommands(options.temporal, waitingCommands, clientId, (err) => logger.warn({ err, clientId }, 'could not wake the commands waiting for the device')));
        }
      },
      inbox: options.history.inbox,
      metrics,
      logger,
    },
    relayOptions,
  );
  const throttle = new SignalThrottle({ max: relayOptions.concurrency }, (limit) => {
    relay.setLimit(limit);
    metrics.signalLimit = limit;
  });
  relay.setLimit(throttle.limit());
  metrics.signalLimit = throttle.limit();
  const sink = new InboxSink(options.history.inbox, relay, {
    limit: options.inboxLimit ?? 100_000,
    ...(options.storeTimeoutMs ? { storeTimeoutMs: options.storeTimeoutMs } : {}),
  });
  const replyStore = new DeviceReplyStore(options.history.db);
  const applier = new ReplyApplier(
    { store: replyStore, apply: replyApplyBatch({ replies: replyStore, executions: new JobExecutionStore(options.history.db), temporal: options.temporal }), logger },
    options.replyApplier,
  );
  const app = buildServer({
    onAnswered: (ms) => throttle.observe(ms),
    token: options.token,
    sink,
    metrics,
    ...(options.bodyLimit ? { bodyLimit: options.bodyLimit } : {}),
    ...(options.connections ? { connections: options.connections } : {}),
    pingStore: async () => {
      await options.history.db.command({ ping: 1 });
    },
    ...(options.logger ? { logger: options.logger } : {}),
    replies: new DeviceReplies({
      replies: replyStore,
      topics: options.deviceTopics ?? DEFAULT_DEVICE_TOPICS,
      applyLater: (stored) => applier.enqueue(stored),
      ...(options.storeTimeoutMs ? { storeTimeoutMs: options.storeTimeoutMs } : {}),
    }),
    repliesBacklog: () => applier.backlog(),
  });
  return {
    app,
    metrics,
    relay,
    applier,
    async listen(host, port) {
      relay.start();
      applier.start();
      throttle.start();
      await app.listen({ host, port });
      const address = app.server.address();
      return typeof address === 'object' && address ? address.port : port;
    },
    async close() {
      throttle.stop();
      await app.close();
      await applier.stop();
      await relay.stop();
    },
  };
}
