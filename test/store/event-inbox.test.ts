import { describe, expect, it } from 'vitest';
import { EventInbox, inboxBucketName, type StoredConnectionEvent } from '../../src/store/event-inbox';
import { freshDatabase } from '../harness';

const connected = (clientId: string, connectedAt: number): StoredConnectionEvent => ({
  key: `${clientId}@${connectedAt}`,
  clientId,
  event: 'connected',
  at: new Date(connectedAt).toISOString(),
  connectedAt,
  receivedAt: new Date(connectedAt).toISOString(),
});

describe('EventInbox (on the real FerretDB)', () => {
  it("keeps one bucket document per write, reads the bucket's events back whole, and stores each event once in the history", async () => {
    const database = await freshDatabase('event-inbox');
    try {
      const inbox = new EventInbox(database.db);
      const bucket = inboxBucketName('test', 0);
      const first = [connected('a', 1), connected('b', 2), connected('c', 3)];
      expect([...(await inbox.store(bucket, first, [])).fresh].sort()).toEqual(first.map((e) => e.key));
      // An EMQX retry of one event: kept in the bucket again (delivery is at least once), not fresh in the history.
      expect((await inbox.store(bucket, [connected('b', 2), connected('d', 4)], [])).fresh).toEqual(new Set(['d@4']));

      expect(await database.db.collection(bucket).countDocuments()).toBe(2);
      expect((await inbox.readBucket(bucket)).map((e) => e.key).sort()).toEqual(['a@1', 'b@2', 'b@2', 'c@3', 'd@4']);
      expect(await inbox.pendingCount()).toBe(5);
      expect(await database.db.collection('connection_events').countDocuments()).toBe(4);
      await inbox.dropBucket(bucket);
      expect(await inbox.pendingCount()).toBe(0);
    } finally {
      await database.close();
    }
  });
});
