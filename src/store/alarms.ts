import type { Collection, Db } from 'mongodb';
import type { Alarm } from '../domain/presence';

/**
 * Offline and flapping alarms, one document per alarm keyed by its deterministic id, replaced whole
 * on every change (the device workflow writes them one at a time, in order), so a retried write
 * stores the same thing again. Each level and state change is kept in `changes`.
 */
type Doc = Alarm & { _id: string };

export class AlarmStore {
  private readonly alarms: Collection<Doc>;

  constructor(db: Db) {
    this.alarms = db.collection('alarms');
  }

  async ensureIndexes(): Promise<void> {
    await Promise.all([
      this.alarms.createIndex({ clientId: 1, raisedAt: -1 }),
      this.alarms.createIndex({ state: 1, raisedAt: -1 }),
      // `list()` without `open`: newest first over all alarms.
      this.alarms.createIndex({ raisedAt: -1 }),
    ]);
  }

  async save(alarm: Alarm): Promise<void> {
    await this.alarms.replaceOne({ _id: alarm.alarmId }, alarm, { upsert: true });
  }

  /** Newest first; `open` keeps alarms that are not cleared (active or acknowledged). */
  async list(options: { open?: boolean; limit?: number } = {}): Promise<Alarm[]> {
    const filter = options.open ? { state: { $in: ['active', 'acknowledged'] as Alarm['state'][] } } : {};
    return this.alarms
      .find(filter, { projection: { _id: 0 } })
      .sort({ raisedAt: -1 })
      .limit(options.limit ?? 100)
      .toArray();
  }

  async ofDevice(clientId: string, limit = 20): Promise<Alarm[]> {
    return this.alarms.find({ clientId }, { projection: { _id: 0 } }).sort({ raisedAt: -1 }).limit(limit).toArray();
  }
}
