import { describe, expect, it } from 'vitest';
import type { CampaignStore, WaitingEntry } from '../../src/store/campaigns';
import { WaitingCampaigns } from '../../src/store/waiting-campaigns';
import { waitFor } from '../harness';

/** A stand-in for the two CampaignStore reads the lookup makes, counting them. */
function fakeStore(running: string[], waiting: Record<string, string[]>) {
  const calls = { list: 0, lookups: 0 };
  const store = {
    waitingCampaignIds: () => {
      calls.list += 1;
      return Promise.resolve([...running]);
    },
    waitingEntry: (campaignId: string, clientId: string): Promise<WaitingEntry | null> => {
      calls.lookups += 1;
      return Promise.resolve(waiting[campaignId]?.includes(clientId) ? { campaignId, clientId, chunk: 0, index: 0 } : null);
    },
  };
  return { store: store as unknown as CampaignStore, calls, running };
}

describe('campaigns waiting for a device (webhook adapter)', () => {
  it('looks up each running waiting campaign by id and caches the list of campaigns', async () => {
    const { store, calls, running } = fakeStore(['c1', 'c2'], { c1: ['dev-a'], c2: ['dev-a', 'dev-b'] });
    const lookup = new WaitingCampaigns(store, 60_000);
    expect(await lookup.forDevice('dev-a')).toEqual(['c1', 'c2']);
    expect(await lookup.forDevice('dev-b')).toEqual(['c2']);
    expect(await lookup.forDevice('dev-c')).toEqual([]);
    expect(calls).toEqual({ list: 1, lookups: 6 });
    running.push('c3'); // not seen until the cache expires
    expect(await lookup.forDevice('dev-a')).toEqual(['c1', 'c2']);
    expect(calls.list).toBe(1);
  });

  it('costs one list read per refresh and no lookups when no campaign waits', async () => {
    const { store, calls } = fakeStore([], {});
    const lookup = new WaitingCampaigns(store, 0);
    await Promise.all([lookup.forDevice('a'), lookup.forDevice('b')]);
    expect(calls.lookups).toBe(0);
    // Concurrent callers share one read of the list.
    expect(calls.list).toBe(1);
    await lookup.forDevice('c');
    expect(calls.list).toBe(2);
  });

  it('answers a fresh lookup from a read of the running campaigns begun after the call, shared by concurrent callers', async () => {
    const { store, calls, running } = fakeStore(['c1'], { c1: ['dev-a'], c2: ['dev-a'], c3: ['dev-b'] });
    const lookup = new WaitingCampaigns(store, 60_000);
    expect(await lookup.forDevice('dev-a')).toEqual(['c1']);
    // A campaign created since the cached read, already waiting for the device (the device workflow's
    // lookup after its subscriptions are live must see it).
    running.push('c2');
    expect(await lookup.forDevice('dev-a')).toEqual(['c1']);
    expect(await lookup.forDevice('dev-a', { fresh: true })).toEqual(['c1', 'c2']);
    expect(calls.list).toBe(2);
    // A read under way began before these calls: they share the one read after it.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const listing = store.waitingCampaignIds.bind(store);
    store.waitingCampaignIds = async () => {
      const ids = await listing();
      await held;
      return ids;
    };
    const first = lookup.forDevice('dev-a', { fresh: true });
    await waitFor(() => calls.list === 3, { what: 'the first read under way', timeoutMs: 1_000 });
    running.push('c3');
    const later = [lookup.forDevice('dev-a', { fresh: true }), lookup.forDevice('dev-b', { fresh: true })];
    release();
    expect(await Promise.all([first, ...later])).toEqual([['c1', 'c2'], ['c1', 'c2'], ['c3']]);
    expect(calls.list).toBe(4);
    // The cache keeps the newest list for plain lookups.
    expect(await lookup.forDevice('dev-b')).toEqual(['c3']);
    expect(calls.list).toBe(4);
  });
});
