import { randomBytes } from 'node:crypto';
import { isGrpcServiceError } from '@temporalio/client';
import type { Logger } from 'pino';
import { SUPERSEDED_REASONS, type PresenceEvent } from '../domain/presence';
import type { StoredConnectionEvent } from '../store';
import { bucketWindowStart, inboxBucketName, type EventInbox } from '../store/event-inbox';
import { toPresenceEvent } from './emqx-events';
import type { WebhookMetrics } from './metrics';

/**
 * Moves stored connect/disconnect events from the inbox to the device workflows.
 *
 * - Per-device coalescing: events of one device that pile up while its previous signal is in
 *   flight go out together in the next one (one signal-with-start for many events), and a device
 *   never has two signals in flight, so its events reach its workflow in the order they were stored
 *   (while some events wait in the inbox to be read back, newer ones wait there too).
 * - Inbox buckets (see event-inbox.ts): each write goes to the bucket of its time window; once a
 *   window is over and every event written to it has been signalled, the bucket is dropped.
 * - Bounded signals: one signal carries at most `maxSignalEvents` events and `maxSignalBytes` of
 *   them, far under Temporal's 2 MB blob limit, however many of a device's events are waiting (a
 *   burst goes out as a series of signals, in order).
 * - Failures: a failed signal (Temporal unavailable) or a failed write marks the bucket; a marked
 *   bucket is read back and delivered again once its window is over. While signals fail, the
 *   relay probes: it reads back one bucket when the backoff has passed and no signal is in flight,
 *   and the backoff grows only when a probe's signal fails. Every probe ends (signals have a
 *   deadline), so whatever the outage's length, the first probe after it succeeds and the relay
 *   delivers everything parked.
 * - Several adapters (docs/webhook-adapter.md, "Several adapters"): each bucket is held under a
 *   lease (EventInbox.holdLeases) that its adapter renews every third of `adoptAfterMs`. A bucket
 *   whose lease has expired (its adapter died or lost MongoDB) is taken by exactly one other adapter,
 *   read back and delivered; an adapter that finds it lost a lease forgets the bucket (the new
 *   holder drops it). Events may still reach a workflow twice (a signal that timed out, a lease
 *   lost mid-delivery); the workflow ignores repeats by key and orders by EMQX's timestamps.
 * - Rejected batches: a batch Temporal refuses as such (invalid or too large, not "unavailable") is
 *   split in halves and retried; a single event it refuses is set aside in the dead-letter
 *   collection and counted, so it never holds up the device or the inbox.
 */

export type DeliverPresence = (clientId: string, events: PresenceEvent[]) => Promise<void>;

export interface RelayOptions {
  /** Signal-with-start calls at once. */
  concurrency: number;
  /** Length of an inbox bucket's time window. */
  bucketMs: number;
  /** How often buckets are checked (drop, read back). */
  sweepIntervalMs: number;
  /**
   * Lease length: a bucket whose adapter has not renewed its lease for this long is adopted by
   * another adapter (renewed every third of it).
   */
  adoptAfterMs: number;
  /** Longest pause between read-backs while signals keep failing. */
  maxBackoffMs: number;
  /**
   * How long a device's first event waits for more before it is signalled: a disconnect and the
   * reconnect right after it then go out as one signal (a storm costs Temporal half the signals).
   */
  lingerMs: number;
  /**
   * How long a device whose newest waiting event is a disconnect waits for its reconnect (counted
   * from the arrival of its oldest waiting event, so none waits longer): a bounce then goes out as
   * one signal, which the device workflow resolves in one task with no grace timer and no search
   * attribute change (one Temporal action instead of five; docs/presence.md). Its connect ends the
   * wait at once. Presence shows offline this much later; alarms count from the disconnect's own
   * time, so they do not move.
   */
  disconnectHoldMs: number;
  /** Most events one signal carries. */
  maxSignalEvents: number;
  /** Most bytes (of the events' JSON) one signal carries. */
  maxSignalBytes: number;
}

export const DEFAULT_RELAY_OPTIONS: RelayOptions = {
  concurrency: 32,
  bucketMs: 10_000,
  sweepIntervalMs: 1_000,
  adoptAfterMs: 30_000,
  maxBackoffMs: 30_000,
  lingerMs: 50,
  disconnectHoldMs: 3_000,
  maxSignalEvents: 500,
  maxSignalBytes: 262_144,
};

/** Writes still in flight may land in a bucket shortly after its window: wait this long before closing it. */
const SETTLE_MS = 2_000;

interface Bucket {
  name: string;
  endsAt: number;
  /** Events of this bucket queued or in flight in this process. */
  pending: number;
  /** Writes into this bucket not finished yet. */
  writes: number;
  /** Some of its events were not delivered from memory: read it back before dropping it. */
  readBack: boolean;
  /** Events known to be undelivered (for the depth gauge). */
  unsent: number;
  /** Its collection exists and this process holds its lease (no other adapter may adopt it). */
  leased: boolean;
}

interface Queued {
  event: StoredConnectionEvent;
  bucket: Bucket;
  /** When the relay got it. */
  queuedAt: number;
}

export class PresenceRelay {
  private readonly instance = randomBytes(4).toString('hex');
  private readonly buckets = new Map<string, Bucket>();
  private readonly waiting = new Map<string, Queued[]>();
  /**
   * Devices with waiting events, with the time their signal may go. An entry may be stale (the
   * device went out meanwhile, or is in flight): pump skips those.
   */
  private readonly ready: { clientId: string; at: number }[] = [];
  /** Devices whose signal waits for a reconnect (see `disconnectHoldMs`), and until when. */
  private readonly held = new Set<string>();
  private readonly holding: { clientId: string; at: number }[] = [];
  private lingerTimer: NodeJS.Timeout | undefined;
  private lingerAt = Infinity;
  private limit: number;
  private readonly inFlight = new Set<string>();
  /** Devices whose last batch Temporal refused: the most events their next signal carries. */
  private readonly caps = new Map<string, number>();
  /** Keys waiting or in flight, so a read-back does not queue them twice. */
  private readonly known = new Set<string>();
  private active = 0;
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private stopped = false;
  private lastSignalOk = true;
  /** While signals fail: the earliest time of the next probe. */
  private retryAt = 0;
  private backoffMs: number;
  private nextAdoptionAt = 0;
  /** The bucket created ahead of time for the next window. */
  private prepared = '';

  constructor(
    private readonly deps: { deliver: DeliverPresence; inbox: EventInbox; metrics: WebhookMetrics; logger: Logger },
    private readonly options: RelayOptions = DEFAULT_RELAY_OPTIONS,
  ) {
    this.backoffMs = options.sweepIntervalMs;
    this.limit = options.concurrency;
  }

  /** Signals allowed at once right now (see SignalThrottle); at most `concurrency`. */
  setLimit(limit: number): void {
    this.limit = Math.max(1, Math.min(this.options.concurrency, limit));
    this.pump();
  }

  start(): void {
    void this.prepareBuckets();
    this.schedule();
    this.scheduleLeases();
  }

  /** This process's name in bucket names and leases. */
  get instanceId(): string {
    return this.instance;
  }

  /** Buckets this process holds (its own and those it adopted). */
  heldBuckets(): string[] {
    return [...this.buckets.keys()];
  }

  /** Renews its leases on a timer of its own, so a long sweep (a big read-back) cannot let them expire. */
  private scheduleLeases(): void {
    if (this.stopped) return;
    this.leaseTimer = setTimeout(() => void this.renewLeases().finally(() => this.scheduleLeases()), Math.max(20, Math.floor(this.options.adoptAfterMs / 3)));
    this.leaseTimer.unref();
  }

  private async renewLeases(): Promise<void> {
    const names = [...this.buckets.keys()];
    if (names.length === 0) return;
    try {
      const held = await this.deps.inbox.holdLeases(this.instance, names, Date.now(), this.options.adoptAfterMs);
      for (const name of names) {
        if (held.has(name)) continue;
        // Another adapter took it (this one could not renew in time): it reads the bucket back and
        // drops it. Events of it still queued here are delivered too; the workflow ignores repeats.
        this.buckets.delete(name);
        this.deps.logger.warn({ bucket: name }, 'lost the lease of an inbox bucket to another adapter');
      }
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'could not renew inbox bucket leases');
    }
  }

  /** Creates this window's and the next window's buckets before any write needs them. */
  private async prepareBuckets(now = Date.now()): Promise<void> {
    const start = now - (now % this.options.bucketMs);
    const next = inboxBucketName(this.instance, start + this.options.bucketMs);
    if (this.prepared === next) return;
    try {
      // Known before they exist, so an unused bucket is dropped after its window like any other.
      await this.lease([this.bucketOf(start), this.bucketOf(start + this.options.bucketMs)], now);
      this.prepared = next;
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'could not create the next inbox bucket');
    }
  }

  /** Events stored and not yet signalled, as far as this process knows. */
  depth(): number {
    let total = 0;
    for (const bucket of this.buckets.values()) total += bucket.pending + bucket.unsent;
    return total;
  }

  temporalUp(): boolean {
    return this.lastSignalOk;
  }

  /** Creates the buckets' collections and takes their leases. */
  private async lease(buckets: Bucket[], now: number): Promise<void> {
    const names = buckets.map((b) => b.name);
    for (const name of names) await this.deps.inbox.createBucket(name);
    const held = await this.deps.inbox.holdLeases(this.instance, names, now, this.options.adoptAfterMs);
    for (const bucket of buckets) if (held.has(bucket.name)) bucket.leased = true;
  }

  /**
   * Opens a write: returns the bucket it must go to, its collection created and its lease held.
   * Close it with `finishWrite`. Normally the sweep prepared it ahead; when the sweep is late (a long
   * read-back after an outage), the write takes the lease itself, or another adapter could adopt
   * the bucket once its window is over and deliver its newer events ahead of this adapter's parked
   * older ones (the device workflow would then ignore those as stale).
   */
  async beginWrite(now = Date.now()): Promise<string> {
    const bucket = this.bucketOf(now - (now % this.options.bucketMs));
    bucket.writes++;
    if (!bucket.leased) {
      try {
        await this.lease([bucket], now);
      } catch (err) {
        bucket.writes--;
        throw err;
      }
      if (!bucket.leased) {
        bucket.writes--;
        throw new Error(`inbox bucket ${bucket.name}: another adapter holds its lease`);
      }
    }
    return bucket.name;
  }

  private bucketOf(windowStart: number): Bucket {
    const name = inboxBucketName(this.instance, windowStart);
    let bucket = this.buckets.get(name);
    if (!bucket) {
      bucket = { name, endsAt: windowStart + this.options.bucketMs, pending: 0, writes: 0, readBack: false, unsent: 0, leased: false };
      this.buckets.set(name, bucket);
    }
    return bucket;
  }

  /** Closes a write: `fresh` are the stored events still to signal; undefined when the write failed. */
  finishWrite(name: string, fresh: readonly StoredConnectionEvent[] | undefined): void {
    const bucket = this.buckets.get(name);
    if (!bucket) return;
    bucket.writes--;
    // A failed write may have stored part of its events: read the bucket back to be sure.
    if (fresh === undefined) bucket.readBack = true;
    else if (!this.lastSignalOk || this.stopped || this.parked()) {
      // While Temporal is unavailable the events wait in MongoDB, not in memory; and while older
      // events wait there, newer ones join them, so that each device gets its events in order.
      bucket.readBack = true;
      bucket.unsent += fresh.length;
    } else this.queue(fresh, bucket);
  }

  /** Some bucket's events are waiting to be read back. */
  private parked(): boolean {
    for (const bucket of this.buckets.values()) if (bucket.readBack) return true;
    return false;
  }

  /** Stops; waits for the signals in flight. Whatever is not delivered stays in its bucket. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    const deadline = Date.now() + 10_000;
    while ((this.active > 0 || this.sweeping) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  private queue(events: readonly StoredConnectionEvent[], bucket: Bucket): void {
    const now = Date.now();
    for (const event of events) {
      if (this.known.has(event.key)) continue;
      this.known.add(event.key);
      bucket.pending++;
      const list = this.waiting.get(event.clientId);
      if (list) list.push({ event, bucket, queuedAt: now });
      else this.waiting.set(event.clientId, [{ event, bucket, queuedAt: now }]);
      // A first event, or the reconnect a held device waited for: its signal goes after the linger.
      const reconnect = event.event === 'connected' && this.held.delete(event.clientId);
      if ((!list || reconnect) && !this.inFlight.has(event.clientId)) this.ready.push({ clientId: event.clientId, at: now + this.options.lingerMs });
    }
    this.pump();
  }

  /**
   * Until when the device's signal waits for a reconnect: while its newest waiting event is a
   * disconnect (not a takeover's), until the hold after that disconnect happened (events read back
   * after an outage are not held: a reconnect would be stored with them), and at most the hold after
   * its oldest waiting event arrived, so a device that keeps flapping is still signalled that often.
   */
  private holdUntil(clientId: string): number {
    const list = this.waiting.get(clientId);
    const newest = list?.at(-1);
    if (!list || !newest || newest.event.event !== 'disconnected' || SUPERSEDED_REASONS.includes(newest.event.reason ?? '')) return 0;
    return Math.min((list[0] as Queued).queuedAt, Date.parse(newest.event.at)) + this.options.disconnectHoldMs;
  }

  private pump(): void {
    const now = Date.now();
    while (this.holding.length > 0 && (this.holding[0] as { at: number }).at <= now) {
      this.ready.push({ clientId: (this.holding.shift() as { clientId: string }).clientId, at: now });
    }
    const holdingUntil = this.holding[0]?.at;
    if (holdingUntil !== undefined && !this.stopped) this.wakeAt(holdingUntil);
    while (!this.stopped && this.active < this.limit && this.ready.length > 0) {
      const next = this.ready[0] as { clientId: string; at: number };
      if (next.at > now) {
        this.wakeAt(next.at);
        break;
      }
      this.ready.shift();
      const clientId = next.clientId;
      if (this.inFlight.has(clientId)) continue;
      const holdUntil = this.holdUntil(clientId);
      if (holdUntil > now) {
        this.held.add(clientId);
        this.holding.push({ clientId, at: holdUntil });
        this.wakeAt(holdUntil);
        continue;
      }
      this.held.delete(clientId);
      const batch = this.takeBatch(clientId);
      if (!batch) continue;
      this.inFlight.add(clientId);
      this.active++;
      void this.signal(clientId, batch);
    }
  }

  /** The device's oldest waiting events, as many as one signal may carry. */
  private takeBatch(clientId: string): Queued[] | undefined {
    const list = this.waiting.get(clientId);
    if (!list) return undefined;
    let bytes = 0;
    let count = 0;
    const most = Math.min(this.options.maxSignalEvents, this.caps.get(clientId) ?? Infinity);
    while (count < list.length && count < most) {
      const size = eventBytes((list[count] as Queued).event);
      if (count > 0 && bytes + size > this.options.maxSignalBytes) break;
      bytes += size;
      count++;
    }
    if (count === list.length) {
      this.waiting.delete(clientId);
      return list;
    }
    return list.splice(0, count);
  }

  private async signal(clientId: string, batch: Queued[]): Promise<void> {
    let outcome: 'delivered' | 'failed' | 'requeued' = 'failed';
    try {
      await this.deps.deliver(clientId, batch.map((q) => toPresenceEvent(q.event)));
      outcome = 'delivered';
      this.deps.metrics.signalled += batch.length;
      this.signalWorked();
      this.relaxCap(clientId);
    } catch (err) {
      if (isRejectedBatch(err)) {
        // Temporal is up and refuses this batch: it would fail the same way on every retry.
        this.signalWorked();
        outcome = await this.setAsideRejected(clientId, batch, err as Error);
      } else this.signalFailed(clientId, err as Error);
    } finally {
      if (outcome !== 'requeued') this.release(batch, outcome === 'delivered');
      this.inFlight.delete(clientId);
      this.active--;
      if (this.waiting.has(clientId)) this.ready.push({ clientId, at: Date.now() });
      this.pump();
    }
  }

  private signalWorked(): void {
    if (!this.lastSignalOk) this.deps.logger.info('signal-with-start works again');
    this.lastSignalOk = true;
    this.backoffMs = this.options.sweepIntervalMs;
    this.retryAt = 0;
  }

  private signalFailed(clientId: string, err: Error): void {
    this.deps.metrics.signalFailures++;
    if (this.lastSignalOk) this.deps.logger.warn({ clientId, err: err.message }, 'signal-with-start failed; events stay in the inbox');
    this.lastSignalOk = false;
    // The signals of one probe fail together: the first of them sets the next probe's time.
    const now = Date.now();
    if (now >= this.retryAt) {
      this.retryAt = now + this.backoffMs;
      this.backoffMs = Math.min(this.options.maxBackoffMs, this.backoffMs * 2);
    }
    // Trying the rest now would only fail the same way, as fast as it can: leave them in MongoDB
    // for the next probe.
    this.abandonQueued();
  }

  /**
   * A batch Temporal refused: it goes back to the head of the device's queue, in order, and the
   * device's next signals carry half as many events; a single event is recorded as a dead letter.
   */
  private async setAsideRejected(clientId: string, batch: Queued[], err: Error): Promise<'delivered' | 'failed' | 'requeued'> {
    if (batch.length > 1) {
      this.deps.metrics.batchesSplit++;
      this.caps.set(clientId, Math.ceil(batch.length / 2));
      this.waiting.set(clientId, [...batch, ...(this.waiting.get(clientId) ?? [])]);
      return 'requeued';
    }
    try {
      await this.deps.inbox.deadLetter(batch.map((q) => q.event), err.message);
      this.deps.metrics.deadLettered += batch.length;
      this.deps.logger.error({ clientId, err: err.message }, 'Temporal refused an event; recorded it as a dead letter');
      return 'delivered';
    } catch (writeErr) {
      this.deps.logger.warn({ clientId, err: (writeErr as Error).message }, 'could not record a dead letter; the event stays in the inbox');
      return 'failed';
    }
  }

  /** After a delivery, a device whose batches were split may carry twice as many again. */
  private relaxCap(clientId: string): void {
    const cap = this.caps.get(clientId);
    if (cap === undefined) return;
    if (cap * 2 >= this.options.maxSignalEvents || !this.waiting.has(clientId)) this.caps.delete(clientId);
    else this.caps.set(clientId, cap * 2);
  }

  private abandonQueued(): void {
    for (const queued of this.waiting.values()) this.release(queued, false);
    this.waiting.clear();
    this.ready.length = 0;
    this.held.clear();
    this.holding.length = 0;
  }

  /** Events leave the relay's hands; those not delivered are read back from their bucket later. */
  private release(events: readonly Queued[], delivered: boolean): void {
    for (const { event, bucket } of events) {
      this.known.delete(event.key);
      bucket.pending--;
      if (!delivered) {
        bucket.readBack = true;
        bucket.unsent++;
      }
    }
  }

  private wakeAt(at: number): void {
    if (this.lingerTimer && this.lingerAt <= at) return;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerAt = at;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      this.lingerAt = Infinity;
      this.pump();
    }, Math.max(1, at - Date.now()));
    this.lingerTimer.unref();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.sweep(), this.options.sweepIntervalMs);
    this.timer.unref();
  }

  /** Drops finished buckets, reads back the ones with undelivered events, adopts orphans. */
  private async sweep(): Promise<void> {
    this.sweeping = true;
    try {
      const now = Date.now();
      await this.prepareBuckets(now);
      if (now >= this.nextAdoptionAt) await this.adoptOrphans(now);
      // Oldest window first: a device's parked events are queued in the order they were stored.
      for (const bucket of [...this.buckets.values()].sort((a, b) => a.endsAt - b.endsAt)) {
        if (this.stopped) break;
        if (now < bucket.endsAt + SETTLE_MS || bucket.writes > 0 || bucket.pending > 0) continue;
        if (!bucket.readBack) {
          await this.deps.inbox.dropBucket(bucket.name);
          this.buckets.delete(bucket.name);
        } else if (this.lastSignalOk) await this.readBack(bucket);
        else if (now >= this.retryAt && this.active === 0) {
          // A probe: one bucket, after the backoff, once the previous probe's signals have ended.
          await this.readBack(bucket);
          break;
        }
      }
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'inbox sweep failed');
    } finally {
      this.sweeping = false;
      this.schedule();
    }
  }

  private async readBack(bucket: Bucket): Promise<void> {
    const events = await this.deps.inbox.readBucket(bucket.name);
    bucket.readBack = false;
    bucket.unsent = 0;
    this.queue(events, bucket);
  }

  /** Takes the buckets whose window is over and whose lease has expired: their adapter is gone. */
  private async adoptOrphans(now: number): Promise<void> {
    this.nextAdoptionAt = now + Math.max(this.options.sweepIntervalMs, Math.min(this.options.adoptAfterMs, 10_000));
    const names = await this.deps.inbox.listBuckets();
    const candidates = names.filter((name) => {
      const start = bucketWindowStart(name);
      return !this.buckets.has(name) && start !== null && now >= start + this.options.bucketMs + SETTLE_MS;
    });
    if (candidates.length > 0) {
      for (const name of await this.deps.inbox.holdLeases(this.instance, candidates, now, this.options.adoptAfterMs)) {
        const start = bucketWindowStart(name) as number;
        this.buckets.set(name, { name, endsAt: start + this.options.bucketMs, pending: 0, writes: 0, readBack: true, unsent: 0, leased: true });
        this.deps.logger.info({ bucket: name }, 'adopting an inbox bucket whose lease expired');
      }
    }
    await this.deps.inbox.dropStaleLeases(names, now);
  }
}

/** An event's share of a signal: the bytes of its JSON, as the payload converter writes it. */
function eventBytes(event: StoredConnectionEvent): number {
  return Buffer.byteLength(JSON.stringify(toPresenceEvent(event)));
}

/** gRPC status codes by which Temporal refuses a request as such (https://grpc.io/docs/guides/status-codes/). */
const INVALID_ARGUMENT = 3;
const RESOURCE_EXHAUSTED = 8;

/**
 * True when Temporal refused this request for what it carries, so sending it again cannot work:
 * INVALID_ARGUMENT (among others the blob size limit, `BlobSizeLimitError`), or a gRPC message
 * over the size limit. Unavailable, deadline exceeded and rate limits are outages, not this.
 */
export function isRejectedBatch(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (!isGrpcServiceError(e)) continue;
    const code: number = e.code;
    if (code === INVALID_ARGUMENT) return true;
    return code === RESOURCE_EXHAUSTED && /larger than max|message size|too large/i.test(e.details);
  }
  return false;
}
