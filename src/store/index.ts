import { MongoClient, type Collection, type Db, type MongoClientOptions } from 'mongodb';
import type { DeviceRecord } from '../domain/schemas/device';
import { AlarmStore } from './alarms';
import { EventInbox } from './event-inbox';
import { StatsStore } from './stats';
import { CampaignStore } from './campaigns';
import { insertNew, upsertMany } from './bulk-upsert';
import type { AuditEntry } from './audit';
import type { ConnectionEvent } from './connection-events';
import type { FleetResult } from './fleet-results';
import { JobExecutionStore } from './job-executions';
import { DeviceReplyStore } from './job-replies';

export type { AuditEntry } from './audit';
export type { ConnectionEvent } from './connection-events';
export type { DeviceEvent, StoredConnectionEvent } from './event-inbox';
export type { FleetResult } from './fleet-results';

/**
 * The one MongoDB access layer. Every write is an upsert on a unique key, because activities run at
 * least once. Works on MongoDB 7 and FerretDB 1.24 (no transactions, no TTL indexes, no `.` or leading
 * `$` in keys: https://docs.ferretdb.io/v1.24/diff).
 */

type WithId<T> = T & { _id: string };

export class History {
  readonly devices: Collection<WithId<DeviceRecord>>;
  readonly audit: Collection<WithId<AuditEntry>>;
  readonly fleetResults: Collection<WithId<FleetResult>>;
  readonly connectionEvents: Collection<WithId<ConnectionEvent>>;
  readonly stats: StatsStore;
  readonly alarms: AlarmStore;
  /** Webhook events: connection history doubling as the durable inbox, and device events. */
  readonly inbox: EventInbox;

  constructor(readonly db: Db) {
    this.devices = db.collection('devices');
    this.audit = db.collection('audit');
    this.fleetResults = db.collection('fleet_results');
    this.connectionEvents = db.collection('connection_events');
    this.stats = new StatsStore(db);
    this.alarms = new AlarmStore(db);
    this.inbox = new EventInbox(db);
  }

  async ensureIndexes(): Promise<void> {
    await Promise.all([
      this.audit.createIndex({ clientId: 1, at: -1 }),
      this.fleetResults.createIndex({ fleetId: 1, clientId: 1 }),
      this.connectionEvents.createIndex({ clientId: 1, at: -1 }),
      // Retention sweeps (retention.ts) delete by time: a range on this index on MongoDB.
      this.connectionEvents.createIndex({ at: 1 }),
      // Campaign selectors by tag (activities/campaign.ts); by prefix they use the _id index.
      this.devices.createIndex({ tags: 1 }),
      new CampaignStore(this.db).ensureIndexes(),
      this.stats.ensureIndexes(),
      this.alarms.ensureIndexes(),
      this.inbox.ensureIndexes(),
      // Device replies and job executions (docs/jobs.md), written by the webhook adapter.
      new DeviceReplyStore(this.db).ensureIndexes(),
      new JobExecutionStore(this.db).ensureIndexes(),
    ]);
  }

  async getDevice(clientId: string): Promise<DeviceRecord | null> {
    const doc = await this.devices.findOne({ _id: clientId }, { projection: { _id: 0 } });
    return doc ?? null;
  }

  /** Stores the device's full record (replace semantics, keyed by client id). */
  async saveDevice(record: DeviceRecord): Promise<void> {
    await this.devices.replaceOne({ _id: record.clientId }, record, { upsert: true });
  }

  async saveDevices(records: DeviceRecord[]): Promise<void> {
    if (records.length === 0) return;
    await upsertMany(this.devices, records.map((record) => ({ _id: record.clientId, ...record })));
  }

  async deleteDevice(clientId: string): Promise<void> {
    await this.devices.deleteOne({ _id: clientId });
  }

  /** Inserted once per key (a retried activity finds its entry there); no upsert, which FerretDB runs as a scan. */
  async recordAudit(entry: AuditEntry): Promise<void> {
    await insertNew(this.audit, [{ _id: entry.key, ...entry }]);
  }

  async auditOf(clientId: string, limit = 50): Promise<AuditEntry[]> {
    return this.audit.find({ clientId }, { projection: { _id: 0 } }).sort({ at: -1 }).limit(limit).toArray();
  }

  async recordFleetResults(results: FleetResult[]): Promise<void> {
    if (results.length === 0) return;
    await upsertMany(this.fleetResults, results.map((r) => ({ _id: `${r.fleetId}/${r.clientId}`, ...r })));
  }

  async fleetResultsOf(fleetId: string, status?: FleetResult['status']): Promise<FleetResult[]> {
    const filter = status ? { fleetId, status } : { fleetId };
    return this.fleetResults.find(filter, { projection: { _id: 0 } }).sort({ clientId: 1 }).toArray();
  }

  async connectionHistory(clientId: string, limit = 50): Promise<ConnectionEvent[]> {
    // The receive time is the adapter's bookkeeping, not history.
    return this.connectionEvents.find({ clientId }, { projection: { _id: 0, receivedAt: 0 } }).sort({ at: -1 }).limit(limit).toArray();
  }
}

/** Connects, ensures indexes, and returns the layer with its `close`. */
export async function connectHistory(uri: string, dbName: string, options: MongoClientOptions = {}): Promise<{ history: History; close(): Promise<void> }> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000, ...options });
  await client.connect();
  const history = new History(client.db(dbName));
  await history.ensureIndexes();
  return { history, close: () => client.close() };
}
