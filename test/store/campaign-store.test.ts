import { describe, expect, it } from 'vitest';
import { NO_SUBSCRIBER_ERROR } from '../../src/domain/campaign-target-state';
import { CampaignStore, chunkingOf, finalRecord } from '../../src/store/campaigns';
import { freshDatabase } from '../harness';

describe('campaign storage (on the real FerretDB)', () => {
  it('stores final records with the ids in `_id` only and reads them back whole', async () => {
    const database = await freshDatabase('campaign-store');
    try {
      const store = new CampaignStore(database.db);
      const at = Date.parse('2026-11-26T10:00:00.000Z');
      await store.recordFinalTargets([
        finalRecord('c1', 'dev-a', { status: 'delivered', attempts: 1, firstAt: at, finishedAt: at, messageId: 'm-1' }),
        finalRecord('c1', 'dev-b', { status: 'failed', attempts: 2, firstAt: at, finishedAt: at + 5_000, lastError: 'EMQX rejected the message' }),
      ]);
      await store.recordFinalTargets([finalRecord('c1', 'dev-c', { status: 'offline', attempts: 1, finishedAt: at })]);

      expect(await store.targets.findOne({ _id: 'c1/dev-a' })).toEqual({ _id: 'c1/dev-a', status: 'delivered', attempts: 1, messageId: 'm-1', finishedAt: '2026-11-26T10:00:00.000Z' });
      const records = await store.targetRecords('c1');
      expect(records.sort((a, b) => a.clientId.localeCompare(b.clientId))).toEqual([
        { campaignId: 'c1', clientId: 'dev-a', status: 'delivered', attempts: 1, messageId: 'm-1', firstAttemptAt: '2026-11-26T10:00:00.000Z', finishedAt: '2026-11-26T10:00:00.000Z' },
        {
          campaignId: 'c1',
          clientId: 'dev-b',
          status: 'failed',
          attempts: 2,
          lastError: 'EMQX rejected the message',
          firstAttemptAt: '2026-11-26T10:00:00.000Z',
          finishedAt: '2026-11-26T10:00:05.000Z',
        },
        { campaignId: 'c1', clientId: 'dev-c', status: 'offline', attempts: 1, firstAttemptAt: '2026-11-26T10:00:00.000Z', finishedAt: '2026-11-26T10:00:00.000Z' },
      ]);
      expect(await store.targetRecord('c1', 'dev-b')).toMatchObject({ campaignId: 'c1', clientId: 'dev-b', attempts: 2 });
      expect(await store.targetRecord('c1', 'nobody')).toBeNull();
    } finally {
      await database.close();
    }
  });

  it('stores waiting targets without the fixed no-subscriber message and reads them back whole', async () => {
    const database = await freshDatabase('campaign-states');
    try {
      const store = new CampaignStore(database.db);
      await store.writeChunks('waits', [{ clientId: 'dev-a' }, { clientId: 'dev-b' }, { clientId: 'dev-c' }]);
      const waiting = { status: 'waiting' as const, attempts: 1, firstAt: 1, nextAt: 60_001, lastFailure: 'no_subscriber' as const, lastError: NO_SUBSCRIBER_ERROR, noSubscriberCount: 1 };
      const retrying = { status: 'retrying' as const, attempts: 2, firstAt: 1, nextAt: 5_001, lastFailure: 'transient' as const, lastError: 'EMQX answered 503', transientCount: 2 };
      await store.writeChunkState('waits', 0, { ledger: { finished: 'd..', open: { 1: waiting, 2: retrying }, effort: { attempted: 1, attempts: 1, transientErrors: 0 } } });
      const stored = await store.chunkStates.findOne({ _id: 'waits/000000' });
      expect(stored?.open).not.toContain(NO_SUBSCRIBER_ERROR);
      expect(stored?.open).toContain('EMQX answered 503');
      expect(await store.readChunkState('waits', 0)).toEqual({ ledger: { finished: 'd..', open: { 1: waiting, 2: retrying }, effort: { attempted: 1, attempts: 1, transientErrors: 0 } } });
    } finally {
      await database.close();
    }
  });

  it('stores plain chunks as client ids and chunks with template values as JSON, and records how they are chunked', async () => {
    const database = await freshDatabase('campaign-chunks');
    try {
      const store = new CampaignStore(database.db);
      const plain = Array.from({ length: 5 }, (_, i) => ({ clientId: `dev-${i}` }));
      expect(await store.writeChunks('plain', plain, 2)).toEqual({ chunkCount: 3, chunkSize: 2 });
      expect(await store.chunks.findOne({ _id: 'plain/000000' })).toMatchObject({ ids: 'dev-0\ndev-1' });
      expect(await store.readChunkTargets('plain', 2)).toEqual([{ clientId: 'dev-4' }]);

      const valued = [{ clientId: 'dev-x', values: { fw: '2.1' } }, { clientId: 'dev-y' }];
      await store.writeChunks('valued', valued);
      expect(await store.readChunkTargets('valued', 0)).toEqual(valued);
      // An id that would split the one-per-line form (stored device ids are not checked again here) stays whole.
      await store.writeChunks('odd', [{ clientId: 'dev\nsplit' }]);
      expect(await store.readChunkTargets('odd', 0)).toEqual([{ clientId: 'dev\nsplit' }]);

      expect(chunkingOf({ source: 'list', total: 2_500, chunkCount: 3, chunkSize: 1_000 })).toEqual({ chunkCount: 3, chunkSize: 1_000 });
      expect(chunkingOf({ source: 'selector' })).toBeNull();
    } finally {
      await database.close();
    }
  });
});
