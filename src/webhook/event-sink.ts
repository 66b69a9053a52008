import type { DeviceEvent, StoredConnectionEvent } from '../store';
import type { EventInbox } from '../store/event-inbox';
import type { ParsedEvents } from './emqx-events';
import { GroupCommit } from './group-commit';
import type { PresenceRelay } from './relay';

/** Where accepted events go. The adapter answers 200 only once `accept` has resolved. */
export interface EventSink {
  accept(events: ParsedEvents): Promise<{ stored: number; duplicates: number }>;
  /** Stored but not yet signalled. */
  depth(): number;
  temporalUp(): boolean;
}

/** The answer is 503: EMQX retries 503 (docs/webhook-adapter.md), so the events are not lost. */
export class SinkUnavailableError extends Error {
  readonly type = 'SinkUnavailableError';
}

export const DEFAULT_STORE_TIMEOUT_MS = 5_000;

interface Write {
  connections: StoredConnectionEvent[];
  deviceEvents: DeviceEvent[];
}

/**
 * The durable inbox: a request is answered once its events are in MongoDB, and they are signalled
 * to the device workflows afterwards by the relay, so Temporal being slow or down does not slow
 * the answers. Requests that arrive while a write is in flight share the next write (group
 * commit). A full inbox (WEBHOOK_INBOX_LIMIT) answers 503, so EMQX holds the events for a while.
 */
export class InboxSink implements EventSink {
  private readonly commit: GroupCommit<Write, { fresh: Set<string> }>;

  constructor(
    private readonly inbox: EventInbox,
    private readonly relay: PresenceRelay,
    /** `storeTimeoutMs`: a request whose events are not stored within it gets 503 (a hung MongoDB). */
    private readonly options: { limit: number; storeTimeoutMs?: number; maxBatch?: number; maxConcurrentWrites?: number },
  ) {
    this.commit = new GroupCommit((writes) => this.write(writes), {
      maxItems: options.maxBatch ?? 500,
      maxConcurrent: options.maxConcurrentWrites ?? 1,
      deadlineMs: options.storeTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS,
    });
  }

  async accept(events: ParsedEvents): Promise<{ stored: number; duplicates: number }> {
    const total = events.connections.length + events.deviceEvents.length;
    if (total === 0) return { stored: 0, duplicates: 0 };
    if (this.relay.depth() >= this.options.limit) throw new SinkUnavailableError('the inbox is full');
    let result: { fresh: Set<string> };
    try {
      result = await this.commit.submit([{ connections: events.connections, deviceEvents: events.deviceEvents }]);
    } catch (err) {
      throw new SinkUnavailableError(`MongoDB unavailable: ${(err as Error).message}`);
    }
    const stored = [...events.connections, ...events.deviceEvents].filter((e) => result.fresh.has(e.key)).length;
    return { stored, duplicates: total - stored };
  }

  private async write(writes: Write[]): Promise<{ fresh: Set<string> }> {
    const connections = writes.flatMap((w) => w.connections);
    const bucket = await this.relay.beginWrite();
    try {
      const result = await this.inbox.store(bucket, connections, writes.flatMap((w) => w.deviceEvents));
      this.relay.finishWrite(bucket, connections.filter((e) => result.fresh.has(e.key)));
      return result;
    } catch (err) {
      this.relay.finishWrite(bucket, undefined);
      throw err;
    }
  }

  depth(): number {
    return this.relay.depth();
  }

  temporalUp(): boolean {
    return this.relay.temporalUp();
  }
}
