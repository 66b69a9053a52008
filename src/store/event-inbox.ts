import type { Collection, Db } from 'mongodb';
import { DUPLICATE_KEY, insertNew } from './bulk-upsert';
import type { ConnectionEvent } from './connection-events';

/**
 * What the webhook adapter writes: every EMQX event once in the history, keyed by a stable key so
 * EMQX's retries and duplicates are stored once (delivery is at-least-once: docs/webhook-adapter.md), and
 * each connect/disconnect also in the durable inbox until its device workflow has been signalled.
 *
 * The inbox is a series of small collections, one per adapter process and time window
 * (`presence_inbox_<instance>_<window start>`), dropped whole once every event in it has been
 * signalled. Each write puts its connects and disconnects into one bucket document (an `events`
 * array): one document per group commit instead of one per event halves what FerretDB writes per
 * event, and a bucket is only ever read whole. Nothing is updated or deleted document by document: FerretDB's SQLite backend scans
 * a collection for every update, delete and non-`_id` filter, so marking events one by one would
 * slow every write as the history grows (measured: 9 s to mark 500 events in a 5,500-event
 * collection). A window left behind by a crashed adapter is adopted and delivered by another.
 *
 * Ownership of a bucket is a lease in `presence_inbox_leases` (`{_id: bucket, owner, expiresAt}`):
 * its adapter renews it while alive, and another adapter may take it only once it has expired
 * (a conditional upsert on `_id`, so of several adapters trying at once exactly one wins).
 */

export interface StoredConnectionEvent extends ConnectionEvent {
  connectedAt: number;
  receivedAt: string;
}

/** Subscribe, unsubscribe and chosen message topics. */
export interface DeviceEvent {
  key: string;
  clientId: string;
  event: 'session.subscribed' | 'session.unsubscribed' | 'message.publish';
  at: string;
  topic: string;
  qos: number;
  payload?: string;
  messageId?: string;
  receivedAt: string;
}

/** A connect/disconnect Temporal refused to take (see PresenceRelay), kept for the operator. */
export interface DeadLetter {
  key: string;
  clientId: string;
  event: StoredConnectionEvent;
  /** Temporal's error. */
  error: string;
  deadLetteredAt: string;
}

type WithId<T> = T & { _id: string };

/** One write's connects and disconnects in an inbox bucket. */
interface BucketDocument {
  events: StoredConnectionEvent[];
}

export const DEAD_LETTERS = 'presence_dead_letters';

export const INBOX_PREFIX = 'presence_inbox_';

/** Who holds which inbox bucket, until when (ms since the epoch). Not itself a bucket: no `_<digits>` suffix. */
export const INBOX_LEASES = 'presence_inbox_leases';

interface Lease {
  _id: string;
  owner: string;
  expiresAt: number;
}

/** `presence_inbox_<instance>_<window start ms>`: the window start tells when it may be adopted. */
export function inboxBucketName(instance: string, windowStart: number): string {
  return `${INBOX_PREFIX}${instance}_${windowStart}`;
}

export function bucketWindowStart(name: string): number | null {
  const match = /_(\d+)$/.exec(name);
  return name.startsWith(INBOX_PREFIX) && match ? Number(match[1]) : null;
}

export class EventInbox {
  private readonly connectionEvents: Collection<WithId<StoredConnectionEvent>>;
  private readonly deviceEvents: Collection<WithId<DeviceEvent>>;
  private readonly deadLetters: Collection<WithId<DeadLetter>>;
  private readonly leases: Collection<Lease>;

  constructor(private readonly db: Db) {
    this.connectionEvents = db.collection('connection_events');
    this.deviceEvents = db.collection('device_events');
    this.deadLetters = db.collection(DEAD_LETTERS);
    this.leases = db.collection(INBOX_LEASES);
  }

  async ensureIndexes(): Promise<void> {
    await Promise.all([
      this.deviceEvents.createIndex({ clientId: 1, at: -1 }),
      // Retention sweeps (retention.ts) delete by these times.
      this.deviceEvents.createIndex({ at: 1 }),
      this.deadLetters.createIndex({ deadLetteredAt: 1 }),
    ]);
  }

  /**
   * Stores the events: connects/disconnects into the inbox bucket first, then everything into the
   * history. Returns the keys the history did not have before, which are the events still to
   * signal. A failure throws (the adapter answers 503 and EMQX retries); because the inbox is
   * written first, an event in the history is always in some inbox bucket too, so a retry that
   * finds it stored loses nothing.
   */
  async store(bucket: string, connections: StoredConnectionEvent[], others: DeviceEvent[]): Promise<{ fresh: Set<string> }> {
    if (connections.length > 0) await this.db.collection<BucketDocument>(bucket).insertOne({ events: connections });
    const [fresh, freshOthers] = await Promise.all([insertOnce(this.connectionEvents, connections), insertOnce(this.deviceEvents, others)]);
    for (const key of freshOthers) fresh.add(key);
    return { fresh };
  }

  /** Creates a bucket ahead of its window: creating a collection on the first write would slow that write. */
  async createBucket(bucket: string): Promise<void> {
    await this.db.createCollection(bucket).catch((err: unknown) => {
      if (!/already exists|NamespaceExists/i.test((err as Error).message)) throw err;
    });
  }

  async listBuckets(): Promise<string[]> {
    const collections = await this.db.listCollections({}, { nameOnly: true }).toArray();
    return collections.map((c) => c.name).filter((name) => bucketWindowStart(name) !== null);
  }

  /**
   * Takes or renews the leases of `buckets` for `owner` until `now + leaseMs`; returns those it holds.
   * One conditional upsert per bucket, on `_id` only (no scan on FerretDB): it matches when the
   * lease is the owner's or has expired, and inserts when there is none; when another adapter holds
   * a live lease the upsert's insert hits the duplicate `_id` and the bucket is not held.
   */
  async holdLeases(owner: string, buckets: readonly string[], now: number, leaseMs: number): Promise<Set<string>> {
    const held = new Set<string>();
    await Promise.all(
      buckets.map(async (bucket) => {
        try {
          await this.leases.updateOne(
            { _id: bucket, $or: [{ owner }, { expiresAt: { $lt: now } }] },
            { $set: { owner, expiresAt: now + leaseMs } },
            { upsert: true },
          );
          held.add(bucket);
        } catch (err) {
          if ((err as { code?: unknown }).code !== DUPLICATE_KEY) throw err;
          // Two upserts of a missing lease at once (even this owner's own, from two timers): one
          // inserts, the other fails on the duplicate `_id`. The lease says who won.
          if ((await this.leases.findOne({ _id: bucket }))?.owner === owner) held.add(bucket);
        }
      }),
    );
    return held;
  }

  /** Removes expired leases of buckets that no longer exist (an adapter that died between drop and release). */
  async dropStaleLeases(existing: readonly string[], now: number): Promise<void> {
    await this.leases.deleteMany({ _id: { $nin: [...existing] }, expiresAt: { $lt: now } });
  }

  async readBucket(bucket: string): Promise<StoredConnectionEvent[]> {
    const docs = await this.db.collection<BucketDocument>(bucket).find({}, { projection: { _id: 0 } }).toArray();
    return docs.flatMap((doc) => doc.events);
  }

  /**
   * Sets aside events Temporal refused (see PresenceRelay), once per event, with Temporal's error,
   * so an operator can inspect them and the inbox is not held up by them.
   */
  async deadLetter(events: readonly StoredConnectionEvent[], error: string): Promise<void> {
    const deadLetteredAt = new Date().toISOString();
    await insertOnce(this.deadLetters, events.map((event) => ({ key: event.key, clientId: event.clientId, event, error: error.slice(0, 1_000), deadLetteredAt })));
  }

  async listDeadLetters(limit = 100): Promise<DeadLetter[]> {
    return this.deadLetters.find({}, { projection: { _id: 0 } }).limit(limit).toArray();
  }

  async dropBucket(bucket: string): Promise<void> {
    await this.db
      .collection(bucket)
      .drop()
      .catch((err: unknown) => {
        // Already dropped (by another adapter that adopted it): done.
        if (!/ns not found|does not exist|NamespaceNotFound/i.test((err as Error).message)) throw err;
      });
    await this.leases.deleteOne({ _id: bucket });
  }

  /** Events waiting in inbox buckets (signalled or not): 0 means every event has been delivered. */
  async pendingCount(): Promise<number> {
    let total = 0;
    for (const bucket of await this.listBuckets()) total += (await this.readBucket(bucket)).length;
    return total;
  }

  async deviceEventsOf(clientId: string, limit = 50): Promise<DeviceEvent[]> {
    return this.deviceEvents.find({ clientId }, { projection: { _id: 0 } }).sort({ at: -1 }).limit(limit).toArray();
  }
}

/** Inserts each document unless its key exists; returns the keys inserted now. */
async function insertOnce<T extends { key: string }>(collection: Collection<WithId<T>>, docs: T[]): Promise<Set<string>> {
  const inserted = await insertNew(collection, docs.map((doc) => ({ _id: doc.key, ...doc })));
  return new Set(inserted.map((i) => (docs[i] as T).key));
}
