import { describe, expect, it } from 'vitest';
import { freshDatabase, stackEndpoints, temporalClient } from '../harness';
import { SEARCH_ATTRIBUTES } from '../../devstack/services';

describe('the test stack', () => {
  it('runs a real Temporal dev server with the project search attributes registered', async () => {
    const { client, connection, close } = await temporalClient();
    try {
      const response = await connection.operatorService.listSearchAttributes({ namespace: stackEndpoints().namespace });
      const names = Object.keys(response.customAttributes ?? {});
      for (const name of Object.keys(SEARCH_ATTRIBUTES)) expect(names).toContain(name);
      expect(client.options.namespace).toBe('default');
    } finally {
      await close();
    }
  });

  it('runs a MongoDB-wire server that enforces unique indexes and upserts', async () => {
    const database = await freshDatabase('stack');
    try {
      const events = database.db.collection('events');
      await events.createIndex({ key: 1 }, { unique: true });
      await events.updateOne({ key: 'a' }, { $setOnInsert: { n: 1 } }, { upsert: true });
      await events.updateOne({ key: 'a' }, { $setOnInsert: { n: 2 } }, { upsert: true });
      await expect(events.insertOne({ key: 'a', n: 3 })).rejects.toThrow(/duplicate key/i);
      expect(await events.find({}, { projection: { _id: 0 } }).toArray()).toEqual([{ key: 'a', n: 1 }]);
    } finally {
      await database.close();
    }
  });
});
