import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyGoPatch, FERRETDB_PATCHES, type GoPatch } from '../../devstack/binaries';
import { MongoClient } from 'mongodb';
import { freshDatabase, ownFerretDb } from '../harness';

/**
 * The dev stack's FerretDB is built with FERRETDB_PATCHES (devstack/binaries.ts) so that lookups by
 * `_id` use the `_id` index, as MongoDB does: unpatched, FerretDB 1.24's SQLite backend scans the
 * whole collection for each one. FerretDB's `explain` returns SQLite's query plan, which says so.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;

beforeAll(async () => {
  database = await freshDatabase('ferret-patch');
  await database.db.collection<{ _id: string; version: number }>('docs').insertMany(Array.from({ length: 50 }, (_, i) => ({ _id: `doc-${i}`, version: 1 })));
});

afterAll(async () => {
  await database?.close();
});

/** SQLite's plan for a find with `filter`, as FerretDB reports it. */
async function planOf(filter: Record<string, unknown>): Promise<{ plan: string; pushdown: boolean }> {
  const answer = await database.db.command({ explain: { find: 'docs', filter } });
  const planner = answer.queryPlanner as { Plan?: unknown };
  return { plan: JSON.stringify(planner.Plan ?? planner), pushdown: answer.filterPushdown === true };
}

describe("the dev stack's FerretDB build", () => {
  it('finds a document by _id through the _id index, not a scan', async () => {
    const { plan, pushdown } = await planOf({ _id: 'doc-7' });
    expect(pushdown).toBe(true);
    expect(plan).toMatch(/SEARCH \S+ USING INDEX \S+__id_/);
    expect(plan).not.toMatch(/SCAN/);
  });

  it('narrows a compare-and-set filter ({_id, version}) by the _id index and still applies the rest', async () => {
    const { plan, pushdown } = await planOf({ _id: 'doc-7', version: 1 });
    expect(pushdown).toBe(true);
    expect(plan).toMatch(/USING INDEX \S+__id_/);
    const docs = database.db.collection<{ _id: string; version: number }>('docs');
    // The rest of the filter still decides: a stale version matches nothing.
    expect((await docs.replaceOne({ _id: 'doc-7', version: 2 }, { version: 3 })).matchedCount).toBe(0);
    expect((await docs.replaceOne({ _id: 'doc-7', version: 1 }, { version: 2 })).modifiedCount).toBe(1);
    expect(await docs.findOne({ _id: 'doc-7' })).toEqual({ _id: 'doc-7', version: 2 });
  });

  it('narrows {_id: {$in: [...]}} by the _id index, and returns exactly the matching documents', async () => {
    const { plan, pushdown } = await planOf({ _id: { $in: ['doc-1', 'doc-2'] }, version: 1 });
    expect(pushdown).toBe(true);
    expect(plan).toMatch(/USING INDEX \S+__id_/);
    const docs = database.db.collection<{ _id: string | number; version: number }>('docs');
    const found = await docs.find({ _id: { $in: ['doc-1', 'doc-49', 'missing'] } }).toArray();
    expect(found.map((d) => d._id).sort()).toEqual(['doc-1', 'doc-49']);
    // A list that is not all strings is left to FerretDB's own matching: same answer.
    expect((await docs.find({ _id: { $in: ['doc-1', 5] } }).toArray()).map((d) => d._id)).toEqual(['doc-1']);
  });

  it('leaves a filter without a plain _id to the scan FerretDB always does', async () => {
    const { pushdown } = await planOf({ version: 1 });
    expect(pushdown).toBe(false);
  });
});

describe("the dev stack's FerretDB build, on a server of its own (unpatched, this test hangs it)", () => {
  it('runs a bulk of 300 replaces in one update command: each update\'s query is closed before the next', async () => {
    const ferret = await ownFerretDb();
    const client = new MongoClient(ferret.address, { serverSelectionTimeoutMS: 10_000, socketTimeoutMS: 60_000 });
    try {
      const docs = client.db('bulk').collection<{ _id: string; version: number }>('docs');
      const ids = Array.from({ length: 300 }, (_, i) => `d-${i}`);
      await docs.insertMany(ids.map((_id) => ({ _id, version: 1 })));
      // Unpatched, the 101st update waits for a SQLite connection forever (the pool holds 100).
      const result = await docs.bulkWrite(
        ids.map((_id) => ({ replaceOne: { filter: { _id, version: 1 }, replacement: { version: 2 } } })),
        { ordered: false },
      );
      expect(result.modifiedCount).toBe(300);
      // The server still answers others.
      expect(await docs.countDocuments({ version: 2 })).toBe(300);
    } finally {
      await client.close();
      await ferret.stop();
    }
  }, 120_000);
});

describe('applyGoPatch', () => {
  const patch: GoPatch = { module: 'example.com/m', file: 'a.go', edits: [{ from: 'x == 1', to: 'ok(x)', count: 2 }], append: 'func ok(x int) bool { return x > 0 }\n' };

  it('replaces every expected occurrence and appends', () => {
    expect(applyGoPatch(patch, 'if x == 1 {}\nif x == 1 {}\n')).toBe('if ok(x) {}\nif ok(x) {}\n\nfunc ok(x int) bool { return x > 0 }\n');
  });

  it('refuses a file that is not the one the patch was written for', () => {
    expect(() => applyGoPatch(patch, 'if x == 1 {}\n')).toThrow(/expected 2 occurrence\(s\) of "x == 1", found 1/);
  });

  it('has patches for the three FerretDB files', () => {
    expect(FERRETDB_PATCHES.map((p) => p.file)).toEqual(['internal/backends/sqlite/metadata/metadata.go', 'internal/backends/sqlite/collection.go', 'internal/handler/msg_update.go']);
  });
});
