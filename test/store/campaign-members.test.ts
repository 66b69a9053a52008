import { describe, expect, it } from 'vitest';
import { CampaignStore } from '../../src/store/campaigns';
import { freshDatabase } from '../harness';

/** A continuous campaign's membership and joined chunks (src/store/campaigns.ts), on the real FerretDB. */
describe('continuous campaign members (on the real FerretDB)', () => {
  it('a device becomes a target once; a retried join adds to what the first attempt wrote; open campaigns are listed with their selectors', async () => {
    const database = await freshDatabase('campaign-members');
    try {
      const store = new CampaignStore(database.db);
      await store.recordMembers('k1', ['a', 'b', 'c'], 2);
      expect(await store.membersAmong('k1', ['a', 'c', 'x'])).toEqual(new Map([['a', 0], ['c', 1]]));

      // The first attempt of a join into chunk 1 (holding `c`): `d` joins; `a` is a member already.
      expect(await store.joinMembers('k1', ['a', 'd'], 1)).toEqual(['d']);
      // It crashed before writing the chunk; the retry was told of `e` as well.
      expect(await store.joinMembers('k1', ['d', 'e'], 1)).toEqual(['d', 'e']);
      await store.chunks.insertOne({ _id: 'k1/000001', campaignId: 'k1', chunk: 1, ids: 'c' });
      expect(await store.writeJoinedChunk('k1', 1, ['d', 'e'])).toBe(3);
      expect(await store.writeJoinedChunk('k1', 1, ['e'])).toBe(3);
      expect(await store.readChunkTargets('k1', 1)).toEqual([{ clientId: 'c' }, { clientId: 'd' }, { clientId: 'e' }]);
      expect(await store.chunkStateIfAny('k1', 1)).toMatchObject({ ledger: { finished: '', open: {} } });
      // Another campaign's membership is its own.
      expect(await store.joinMembers('k2', ['a'], 0)).toEqual(['a']);
      // Nothing to join: no chunk.
      expect(await store.writeJoinedChunk('k1', 2, [])).toBe(0);
      expect(await store.chunks.findOne({ _id: 'k1/000002' })).toBeNull();

      await store.campaigns.insertMany([
        { _id: 'k1', continuous: 'open', active: true, targets: { source: 'selector', selector: { tag: 't' } } },
        { _id: 'k3', continuous: 'closed', active: true, targets: { source: 'selector', selector: { tag: 't' } } },
        { _id: 'k4', continuous: 'open', active: false, targets: { source: 'selector', selector: { tag: 't' } } },
      ] as never);
      expect(await store.openContinuousCampaigns()).toEqual([{ campaignId: 'k1', selector: { tag: 't' } }]);

      await store.deleteCampaignData('k1');
      expect(await store.membersAmong('k1', ['a', 'd'])).toEqual(new Map());
      expect(await store.membersAmong('k2', ['a'])).toEqual(new Map([['a', 0]]));
    } finally {
      await database.close();
    }
  });
});
