import { MongoBulkWriteError, type WriteError, type AnyBulkWriteOperation, type Collection, type Document, type OptionalUnlessRequiredId } from 'mongodb';

const DUPLICATE_KEY = 11000;

/**
 * Writes many documents with replace-or-insert semantics, keyed by `_id`. Same result as a bulk of
 * `replaceOne({_id}, doc, {upsert: true})`, but new documents go through `insertMany`: on FerretDB
 * (SQLite) an upserting bulk costs about 3 ms per document, an insert about 0.06 ms
 * (measured: 1,000 devices 3.1 s vs 57 ms). Documents that already exist, or that appear between
 * the lookup and the insert (a duplicate-key error), are replaced one by one in a bulk.
 */
export async function upsertMany<T extends Document & { _id: string }>(collection: Collection<T>, docs: T[]): Promise<void> {
  if (docs.length === 0) return;
  const ids = docs.map((d) => d._id);
  const byId = collection as unknown as Collection<{ _id: string }>;
  const found = await byId.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray();
  const existing = new Set(found.map((d) => String(d._id)));
  const fresh = docs.filter((d) => !existing.has(d._id));
  const toReplace = docs.filter((d) => existing.has(d._id));

  if (fresh.length > 0) {
    try {
      await collection.insertMany(fresh as OptionalUnlessRequiredId<T>[], { ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = ([] as WriteError[]).concat(err.writeErrors);
      if (errors.some((e) => e.code !== DUPLICATE_KEY)) throw err;
      for (const e of errors) {
        const doc = fresh[e.index];
        if (doc) toReplace.push(doc);
      }
    }
  }
  if (toReplace.length > 0) {
    const ops = toReplace.map((doc) => {
      const { _id, ...replacement } = doc;
      return { replaceOne: { filter: { _id }, replacement, upsert: true } } as unknown as AnyBulkWriteOperation<T>;
    });
    await collection.bulkWrite(ops, { ordered: false });
  }
}
