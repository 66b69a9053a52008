import { MongoBulkWriteError, type BulkWriteResult, type Collection } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { insertNew, upsertMany } from '../../src/store/bulk-upsert';
import { freshDatabase } from '../harness';

describe('upsertMany (on the real FerretDB)', () => {
  it('inserts new documents, replaces existing ones, and survives a concurrent insert of the same key', async () => {
    const database = await freshDatabase('upsert');
    try {
      const col = database.db.collection<{ _id: string; v: number; extra?: string }>('docs');
      await col.insertOne({ _id: 'a', v: 0, extra: 'old' });
      await upsertMany(col, [{ _id: 'a', v: 1 }, { _id: 'b', v: 2 }]);
      expect(await col.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', v: 1 }, { _id: 'b', v: 2 }]);
      // Two writers racing on the same new keys: both succeed, and one value wins per key.
      await Promise.all([upsertMany(col, [{ _id: 'c', v: 3 }]), upsertMany(col, [{ _id: 'c', v: 4 }])]);
      expect([3, 4]).toContain((await col.findOne({ _id: 'c' }))?.v);
      expect(await col.countDocuments()).toBe(3);
    } finally {
      await database.close();
    }
  });
});

describe('insertNew', () => {
  it('inserts what is new, reports which, and keeps what exists (on the real FerretDB)', async () => {
    const database = await freshDatabase('insert-new');
    try {
      const col = database.db.collection<{ _id: string; v: number }>('docs');
      await col.insertOne({ _id: 'b', v: 0 });
      expect(await insertNew(col, [{ _id: 'a', v: 1 }, { _id: 'b', v: 2 }, { _id: 'c', v: 3 }])).toEqual([0, 2]);
      expect(await col.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', v: 1 }, { _id: 'b', v: 0 }, { _id: 'c', v: 3 }]);
      expect(await insertNew(col, [])).toEqual([]);
    } finally {
      await database.close();
    }
  });

  it('throws a bulk error without write errors (a lost connection): nothing is known to be stored', async () => {
    const lost = new MongoBulkWriteError({ message: 'connection closed', code: 0, writeErrors: [] }, {} as BulkWriteResult);
    const col = { insertMany: () => Promise.reject(lost) } as unknown as Collection<{ _id: string }>;
    await expect(insertNew(col, [{ _id: 'x' }])).rejects.toBe(lost);
  });
});
