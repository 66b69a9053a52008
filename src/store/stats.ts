import type { Collection, Db } from 'mongodb';
import { insertNew } from './bulk-upsert';

/**
 * Broker statistics snapshots, one document per scheduled run (keyed by the run's workflow id, so
 * a retried activity writes once). EMQX counter names contain dots, which FerretDB does not allow
 * in keys, so the figures are stored under plain names.
 */
export interface StatsSnapshot {
  id: string;
  at: string;
  online: number;
  connections: number;
  subscriptions: number;
  topics: number;
  retained: number;
  messages: { received: number; sent: number; dropped: number };
}

type Doc = Omit<StatsSnapshot, 'id'> & { _id: string };

export class StatsStore {
  private readonly snapshots: Collection<Doc>;

  constructor(db: Db) {
    this.snapshots = db.collection('stats_snapshots');
  }

  async ensureIndexes(): Promise<void> {
    await this.snapshots.createIndex({ at: -1 });
  }

  /** One document per snapshot id, the first written kept (a retried activity's); an insert, not an upsert, which FerretDB runs as a scan. */
  async save(snapshot: StatsSnapshot): Promise<void> {
    const { id, ...rest } = snapshot;
    await insertNew(this.snapshots, [{ _id: id, ...rest }]);
  }

  async since(from: Date): Promise<StatsSnapshot[]> {
    const docs = await this.snapshots.find({ at: { $gte: from.toISOString() } }).sort({ at: 1 }).toArray();
    return docs.map(({ _id, ...rest }) => ({ id: _id, ...rest }));
  }

  async latest(): Promise<StatsSnapshot | null> {
    const doc = await this.snapshots.find({}).sort({ at: -1 }).limit(1).next();
    if (!doc) return null;
    const { _id, ...rest } = doc;
    return { id: _id, ...rest };
  }
}

/** Reads the figures this project reports out of EMQX's aggregate /stats and /metrics counters. */
export function snapshotFromCounters(id: string, at: Date, stats: Record<string, number>, metrics: Record<string, number>): StatsSnapshot {
  const n = (source: Record<string, number>, key: string): number => source[key] ?? 0;
  return {
    id,
    at: at.toISOString(),
    online: n(stats, 'live_connections.count'),
    connections: n(stats, 'connections.count'),
    subscriptions: n(stats, 'subscriptions.count'),
    topics: n(stats, 'topics.count'),
    retained: n(stats, 'retained.count'),
    messages: { received: n(metrics, 'messages.received'), sent: n(metrics, 'messages.sent'), dropped: n(metrics, 'messages.dropped') },
  };
}
