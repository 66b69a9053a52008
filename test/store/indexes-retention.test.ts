import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectHistory, type History } from '../../src/store';
import { RETAINED_COLLECTIONS, sweepRetention } from '../../src/store/retention';
import { freshDatabase, stackEndpoints } from '../harness';

/**
 * MongoDB in production (docs/mongodb.md): every index the project's queries need exists once a
 * process has connected (connectHistory, which the worker, the adapter and the CLI call at start),
 * and the retention sweep removes what is past retention and nothing else.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let connected: { history: History; close(): Promise<void> };

beforeAll(async () => {
  database = await freshDatabase('indexes');
  connected = await connectHistory(stackEndpoints().mongoUri, database.name);
});

afterAll(async () => {
  await connected?.close();
  await database?.close();
});

/** The table of docs/mongodb.md: collection and index keys, in order. */
const EXPECTED: [string, Record<string, 1 | -1>][] = [
  ['devices', { tags: 1 }],
  ['audit', { clientId: 1, at: -1 }],
  ['fleet_results', { fleetId: 1, clientId: 1 }],
  ['connection_events', { clientId: 1, at: -1 }],
  ['connection_events', { at: 1 }],
  ['device_events', { clientId: 1, at: -1 }],
  ['device_events', { at: 1 }],
  ['presence_dead_letters', { deadLetteredAt: 1 }],
  ['alarms', { clientId: 1, raisedAt: -1 }],
  ['alarms', { state: 1, raisedAt: -1 }],
  ['alarms', { raisedAt: -1 }],
  ['stats_snapshots', { at: -1 }],
  ['campaigns', { active: 1 }],
  ['campaign_waiting', { clientId: 1 }],
  ['job_executions', { jobId: 1, status: 1 }],
  ['job_executions', { jobId: 1, retryAt: 1 }],
  ['device_replies', { clientId: 1, at: -1 }],
  ['device_replies', { receivedAt: 1 }],
  ['reply_backlog', { at: 1, messageId: 1 }],
];

describe('indexes at start', () => {
  it('creates every index the queries need when a process connects', async () => {
    for (const [collection, key] of EXPECTED) {
      const indexes = await database.db.collection(collection).indexes();
      expect(
        indexes.map((i) => JSON.stringify(i.key)),
        `${collection} ${JSON.stringify(key)}`,
      ).toContain(JSON.stringify(key));
    }
  });
});

describe('retention sweep', () => {
  const day = 86_400_000;
  const now = Date.parse('2026-06-01T00:00:00.000Z');
  const iso = (ms: number): string => new Date(ms).toISOString();

  it('deletes what is older than each retention, keeps the rest, and keeps everything at 0', async () => {
    const fields = Object.fromEntries(RETAINED_COLLECTIONS.map((r) => [r.collection, r.field]));
    const seed = async (collection: string, ages: number[]): Promise<void> => {
      await database.db.collection<{ _id: string }>(collection).insertMany(ages.map((age) => ({ _id: `${collection}-${age}`, [fields[collection] as string]: iso(now - age * day) })));
    };
    await seed('connection_events', [1, 29, 31, 400]);
    await seed('device_events', [2, 45]);
    await seed('device_replies', [29, 31]);
    await seed('stats_snapshots', [10, 89, 91]);
    await seed('presence_dead_letters', [3, 8]);

    const kept = async (collection: string): Promise<string[]> =>
      (await database.db.collection<{ _id: string }>(collection).find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id).sort();

    // Retention off: nothing goes.
    expect(await sweepRetention(database.db, { eventsMs: 0, statsMs: 0, deadLettersMs: 0 }, now)).toEqual({});
    expect(await kept('connection_events')).toHaveLength(4);

    const deleted = await sweepRetention(database.db, { eventsMs: 30 * day, statsMs: 90 * day, deadLettersMs: 7 * day }, now);
    expect(deleted).toEqual({ connection_events: 2, device_events: 1, device_replies: 1, stats_snapshots: 1, presence_dead_letters: 1 });
    expect(await kept('connection_events')).toEqual(['connection_events-1', 'connection_events-29']);
    expect(await kept('device_events')).toEqual(['device_events-2']);
    expect(await kept('device_replies')).toEqual(['device_replies-29']);
    expect(await kept('stats_snapshots')).toEqual(['stats_snapshots-10', 'stats_snapshots-89']);
    expect(await kept('presence_dead_letters')).toEqual(['presence_dead_letters-3']);
  });
});
