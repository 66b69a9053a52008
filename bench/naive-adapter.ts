import { Client, Connection } from '@temporalio/client';
import { createDataConverter } from '../src/codec/data-converter';
import { loadConfig, temporalConnectionOptions } from '../src/config';
import { connectHistory, type History } from '../src/store';
import { deliverPresenceEvents } from '../src/temporal/presence-delivery';
import { toPresenceEvent, type ParsedEvents } from '../src/webhook/emqx-events';
import { SinkUnavailableError, type EventSink } from '../src/webhook/event-sink';
import { WebhookMetrics } from '../src/webhook/metrics';
import { buildServer } from '../src/webhook/server';

/**
 * The naive adapter the presence benchmark compares against: same server, same validation, but each
 * request stores its events and then awaits one signal-with-start per event before answering.
 * Not production code; run by bench/presence.ts as its own process.
 */
class DirectSink implements EventSink {
  constructor(
    private readonly history: History,
    private readonly temporal: Client,
    private readonly taskQueue: string,
  ) {}

  async accept(events: ParsedEvents): Promise<{ stored: number; duplicates: number }> {
    let fresh: Set<string>;
    try {
      // The naive adapter keeps no inbox: its "bucket" is never read back (drop it in the benchmark).
      fresh = (await this.history.inbox.store('naive_adapter_log', events.connections, events.deviceEvents)).fresh;
    } catch (err) {
      throw new SinkUnavailableError(`MongoDB unavailable: ${(err as Error).message}`);
    }
    for (const event of events.connections) {
      try {
        await deliverPresenceEvents(this.temporal, { clientId: event.clientId, taskQueue: this.taskQueue, events: [toPresenceEvent(event)] });
      } catch (err) {
        throw new SinkUnavailableError(`Temporal unavailable: ${(err as Error).message}`);
      }
    }
    const stored = [...events.connections, ...events.deviceEvents].filter((e) => fresh.has(e.key)).length;
    return { stored, duplicates: events.connections.length + events.deviceEvents.length - stored };
  }

  depth(): number {
    return 0;
  }

  temporalUp(): boolean {
    return true;
  }
}

async function main(): Promise<void> {
  const config = loadConfig(['temporal', 'mongo', 'webhook', 'codec']);
  const connection = await Connection.connect(temporalConnectionOptions(config.temporal));
  const temporal = new Client({ connection, namespace: config.temporal.TEMPORAL_NAMESPACE, dataConverter: createDataConverter(config.codec.PAYLOAD_ENCRYPTION_KEYS) });
  const mongo = await connectHistory(config.mongo.MONGODB_URI, config.mongo.MONGODB_DB);
  const app = buildServer({
    token: config.webhook.WEBHOOK_TOKEN,
    sink: new DirectSink(mongo.history, temporal, config.temporal.TEMPORAL_TASK_QUEUE),
    metrics: new WebhookMetrics(),
    pingStore: async () => {
      await mongo.history.db.command({ ping: 1 });
    },
  });
  await app.listen({ host: config.webhook.WEBHOOK_HOST, port: config.webhook.WEBHOOK_PORT });
  process.once('SIGTERM', () => {
    void app.close().then(async () => {
      await mongo.close();
      await connection.close();
      process.exit(0);
    });
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
