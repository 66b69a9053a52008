import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PresenceEvent } from '../../src/domain/presence';
import { presenceEventKey } from '../../src/domain/presence';
import { EventInbox, inboxBucketName, type StoredConnectionEvent } from '../../src/store/event-inbox';
import { WebhookMetrics } from '../../src/webhook/metrics';
import { DEFAULT_RELAY_OPTIONS, type RelayOptions, isRejectedBatch, PresenceRelay } from '../../src/webhook/relay';
import { freshDatabase, waitFor } from '../harness';

/**
 * The relay on its own, with the real inbox on FerretDB and a stand-in for Temporal that refuses
 * what the test says: refused batches are split, a refused event is set aside as a dead letter, and
 * nothing else is held up.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let inbox: EventInbox;

beforeAll(async () => {
  database = await freshDatabase('relay');
  inbox = new EventInbox(database.db);
});

afterAll(async () => {
  await database?.close();
});

/** An error as @temporalio/client throws for a gRPC status. */
function grpcError(code: number, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
}

function connected(clientId: string, connectedAt: number): StoredConnectionEvent {
  return { key: presenceEventKey.connected(clientId, connectedAt), clientId, event: 'connected', at: new Date(connectedAt).toISOString(), connectedAt, receivedAt: new Date().toISOString() };
}

function disconnected(clientId: string, connectedAt: number, disconnectedAt: number, reason = 'tcp_closed'): StoredConnectionEvent {
  return {
    key: presenceEventKey.disconnected(clientId, connectedAt),
    clientId,
    event: 'disconnected',
    at: new Date(disconnectedAt).toISOString(),
    reason,
    connectedAt,
    receivedAt: new Date().toISOString(),
  };
}

describe('isRejectedBatch', () => {
  it('tells a refused request from an outage', () => {
    expect(isRejectedBatch(grpcError(3, 'Blob data size exceeds limit.'))).toBe(true);
    expect(isRejectedBatch(Object.assign(new Error('failed'), { cause: grpcError(8, 'Received message larger than max (4200000 vs. 4194304)') }))).toBe(true);
    expect(isRejectedBatch(grpcError(8, 'namespace rate limit exceeded'))).toBe(false);
    expect(isRejectedBatch(grpcError(14, 'No connection established'))).toBe(false);
    expect(isRejectedBatch(grpcError(4, 'Deadline exceeded'))).toBe(false);
    expect(isRejectedBatch(new Error('something else'))).toBe(false);
  });
});

describe('PresenceRelay', () => {
  it('splits refused batches, sets a refused event aside as a dead letter, and delivers the rest in order', async () => {
    const poison = connected('dl-a', 1_005);
    const delivered = new Map<string, string[]>();
    let calls = 0;
    const deliver = (clientId: string, events: PresenceEvent[]): Promise<void> => {
      calls++;
      if (events.some((e) => e.key === poison.key)) return Promise.reject(grpcError(3, 'refused'));
      delivered.set(clientId, [...(delivered.get(clientId) ?? []), ...events.map((e) => e.key)]);
      return Promise.resolve();
    };
    const metrics = new WebhookMetrics();
    const relay = new PresenceRelay({ deliver, inbox, metrics, logger: pino({ level: 'silent' }) }, { ...DEFAULT_RELAY_OPTIONS, sweepIntervalMs: 100, bucketMs: 500, maxSignalEvents: 8 });
    relay.start();
    try {
      const a = Array.from({ length: 20 }, (_, i) => connected('dl-a', 1_000 + i));
      const b = Array.from({ length: 5 }, (_, i) => connected('dl-b', 1_000 + i));
      const events = [...a, ...b];
      const bucket = await relay.beginWrite();
      const { fresh } = await inbox.store(bucket, events, []);
      relay.finishWrite(bucket, events.filter((e) => fresh.has(e.key)));

      await waitFor(async () => relay.depth() === 0 && (await inbox.pendingCount()) === 0, { timeoutMs: 20_000, what: 'everything delivered or set aside' });
      expect(delivered.get('dl-a')).toEqual(a.map((e) => e.key).filter((key) => key !== poison.key));
      expect(delivered.get('dl-b')).toEqual(b.map((e) => e.key));
      expect(metrics.deadLettered).toBe(1);
      expect(metrics.batchesSplit).toBeGreaterThan(0);
      expect(metrics.signalFailures).toBe(0);
      expect(relay.temporalUp()).toBe(true);
      // Bounded: at most 8 events per signal, so a handful of calls, not one per event.
      expect(calls).toBeLessThan(20);
      const letters = await inbox.listDeadLetters();
      expect(letters).toMatchObject([{ key: poison.key, clientId: 'dl-a', error: '3 refused', event: { connectedAt: 1_005 } }]);
    } finally {
      await relay.stop();
    }
  });

  describe('several adapters on one inbox (leases)', () => {
    // Leases of 1.5 s, renewed every 0.5 s: short for a quick test, yet long enough that a renewal
    // delayed by a loaded machine (the whole suite on 2 cores) does not lose a lease mid-delivery.
    const quick = { ...DEFAULT_RELAY_OPTIONS, sweepIntervalMs: 100, bucketMs: 500, adoptAfterMs: 1_500 };
    const silent = pino({ level: 'silent' });

    /** A relay whose deliveries are recorded (or refused while `down()`), with the time of each. */
    function recordingRelay(name: string, log: { relay: string; key: string; at: number }[], down: () => boolean = () => false, options: Partial<RelayOptions> = {}): PresenceRelay {
      const deliver = (_clientId: string, events: PresenceEvent[]): Promise<void> => {
        if (down()) return Promise.reject(new Error(`${name}: 14 UNAVAILABLE`));
        for (const e of events) log.push({ relay: name, key: e.key, at: Date.now() });
        return Promise.resolve();
      };
      return new PresenceRelay({ deliver, inbox, metrics: new WebhookMetrics(), logger: silent }, { ...quick, ...options });
    }

    /** Stops relay A, then waits until relay B has adopted A's bucket, delivered each of its events once and dropped it. */
    async function diesAndIsAdoptedByB(a: PresenceRelay, name: string, events: StoredConnectionEvent[], log: { relay: string; key: string }[], timeoutMs: number): Promise<void> {
      await a.stop();
      await waitFor(async () => !(await inbox.listBuckets()).includes(name), { timeoutMs, what: "A's bucket delivered by B" });
      expect(log.map((d) => d.key).sort()).toEqual(events.map((e) => e.key).sort());
      expect(new Set(log.map((d) => d.relay))).toEqual(new Set(['b']));
    }

    it('an owner racing itself for a new lease holds it; another owner does not get it until it expires', async () => {
      const bucket = inboxBucketName('racer', Date.now());
      const now = Date.now();
      const both = await Promise.all([inbox.holdLeases('racer', [bucket], now, 60_000), inbox.holdLeases('racer', [bucket], now, 60_000)]);
      expect(both).toEqual([new Set([bucket]), new Set([bucket])]);
      expect(await inbox.holdLeases('other', [bucket], now + 59_000, 60_000)).toEqual(new Set());
      expect(await inbox.holdLeases('other', [bucket], now + 61_000, 60_000)).toEqual(new Set([bucket]));
      expect(await inbox.holdLeases('racer', [bucket], now + 62_000, 60_000)).toEqual(new Set());
    });

    it('a bucket left by a dead adapter is adopted by exactly one of three live ones, after its lease expires', async () => {
      // What an adapter killed mid-storm leaves: a bucket of a past window, events in it, its lease running out.
      const leaseEnds = Date.now() + 2_000;
      const bucket = inboxBucketName('deadbeef', Date.now() - 5_000);
      await inbox.createBucket(bucket);
      expect(await inbox.holdLeases('deadbeef', [bucket], leaseEnds - 2_000, 2_000)).toEqual(new Set([bucket]));
      const events = Array.from({ length: 30 }, (_, i) => connected(`orphan-${i % 10}`, 5_000 + i));
      await inbox.store(bucket, events, []);

      const log: { relay: string; key: string; at: number }[] = [];
      const relays = ['b', 'c', 'd'].map((name) => recordingRelay(name, log));
      for (const relay of relays) relay.start();
      try {
        await waitFor(async () => !(await inbox.listBuckets()).includes(bucket), { timeoutMs: 20_000, what: 'the orphan bucket delivered and dropped' });
        // Each event once, by one adapter, and not before the dead adapter's lease ran out.
        expect(log.map((d) => d.key).sort()).toEqual(events.map((e) => e.key).sort());
        expect(new Set(log.map((d) => d.relay)).size).toBe(1);
        expect(Math.min(...log.map((d) => d.at))).toBeGreaterThanOrEqual(leaseEnds);
      } finally {
        await Promise.all(relays.map((r) => r.stop()));
      }
    });

    it('a write into a bucket the sweep has not prepared takes its lease, so a live adapter keeps it (another would deliver its newer events ahead of the parked older ones)', async () => {
      const log: { relay: string; key: string; at: number }[] = [];
      // A's sweep is late, as during a long read-back after an outage: after its first it prepares
      // no bucket for a minute. Its leases are long (15 s, renewed every 5 s, the first renewal 5 s
      // after start): a bucket it did not lease when writing would be B's before that renewal.
      // Its events stay parked (Temporal down).
      const a = recordingRelay('a', log, () => true, { sweepIntervalMs: 60_000, adoptAfterMs: 15_000 });
      const b = recordingRelay('b', log);
      a.start();
      b.start();
      try {
        // Two windows later: the current window is one A's sweep never prepared.
        await new Promise((r) => setTimeout(r, 2 * quick.bucketMs + 50));
        const events = Array.from({ length: 8 }, (_, i) => connected(`late-sweep-${i % 4}`, 7_000 + i));
        const name = await a.beginWrite();
        const { fresh } = await inbox.store(name, events, []);
        a.finishWrite(name, events.filter((e) => fresh.has(e.key)));
        // Window over, the settle time, and four lease lengths: an unleased bucket would be B's by now.
        const windowEnd = Date.now() + quick.bucketMs;
        await waitFor(() => Date.now() > windowEnd + 2_000 + 4 * quick.adoptAfterMs, { timeoutMs: 15_000, intervalMs: 100, what: 'four lease lengths after the window' });
        expect(log).toEqual([]);
        expect(b.heldBuckets()).not.toContain(name);
        expect(a.heldBuckets()).toContain(name);
        // A dies: B adopts the bucket once the lease A took runs out, and delivers each event once.
        await diesAndIsAdoptedByB(a, name, events, log, 40_000);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    });

    it("a live adapter's parked bucket stays its own while it renews the lease, and is adopted once it stops", async () => {
      const log: { relay: string; key: string; at: number }[] = [];
      // Adapter A cannot reach Temporal: its events stay parked in its bucket, well past the lease length.
      const a = recordingRelay('a', log, () => true);
      const b = recordingRelay('b', log);
      a.start();
      b.start();
      try {
        const events = Array.from({ length: 12 }, (_, i) => connected(`parked-${i % 4}`, 9_000 + i));
        const name = await a.beginWrite();
        const { fresh } = await inbox.store(name, events, []);
        a.finishWrite(name, events.filter((e) => fresh.has(e.key)));
        // Window over, plus four lease lengths: with an unrenewed lease B would have taken it by now.
        const windowEnd = Date.now() + quick.bucketMs;
        await waitFor(() => Date.now() > windowEnd + 4 * quick.adoptAfterMs, { timeoutMs: 10_000, intervalMs: 100, what: 'four lease lengths after the window' });
        expect(log).toEqual([]);
        expect(await inbox.listBuckets()).toContain(name);
        expect(a.heldBuckets()).toContain(name);
        expect(b.heldBuckets()).not.toContain(name);

        // A dies (stops renewing): B adopts its bucket and delivers every event once.
        await diesAndIsAdoptedByB(a, name, events, log, 20_000);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    });
  });

  it('holds a disconnect until the reconnect comes, so a bounce is one signal; a disconnect alone goes after the hold, a takeover at once', async () => {
    const signals: { clientId: string; kinds: string[]; at: number }[] = [];
    const deliver = (clientId: string, events: PresenceEvent[]): Promise<void> => {
      signals.push({ clientId, kinds: events.map((e) => e.kind), at: Date.now() });
      return Promise.resolve();
    };
    const holdMs = 4_000;
    const relay = new PresenceRelay({ deliver, inbox, metrics: new WebhookMetrics(), logger: pino({ level: 'silent' }) }, { ...DEFAULT_RELAY_OPTIONS, sweepIntervalMs: 100, bucketMs: 500, disconnectHoldMs: holdMs });
    const write = async (events: StoredConnectionEvent[]): Promise<number> => {
      const bucket = await relay.beginWrite();
      const { fresh } = await inbox.store(bucket, events, []);
      relay.finishWrite(bucket, events.filter((e) => fresh.has(e.key)));
      return Date.now();
    };
    relay.start();
    try {
      const t = Date.now();
      await write([connected('hold-bounce', t), connected('hold-alone', t), connected('hold-takeover', t)]);
      await waitFor(() => signals.length === 3, { what: 'the connects signalled' });
      signals.length = 0;

      // Live events: they happened just now (the hold counts from the disconnect's own time too).
      const dropped = Date.now();
      await write([disconnected('hold-bounce', t, dropped), disconnected('hold-alone', t, dropped), disconnected('hold-takeover', t, dropped, 'takenover')]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const back = await write([connected('hold-bounce', t + 500)]);
      await waitFor(() => signals.length === 3, { what: 'every device signalled once', timeoutMs: 10_000 });

      const of = (clientId: string) => signals.find((s) => s.clientId === clientId);
      expect(of('hold-takeover')?.kinds).toEqual(['disconnected']);
      expect((of('hold-takeover')?.at ?? Infinity) - dropped).toBeLessThan(holdMs);
      // The bounce: one signal, sent on the reconnect, not at the end of the hold.
      expect(of('hold-bounce')?.kinds).toEqual(['disconnected', 'connected']);
      expect(of('hold-bounce')?.at).toBeGreaterThanOrEqual(back);
      expect((of('hold-bounce')?.at ?? Infinity) - dropped).toBeLessThan(holdMs);
      // The device that stays away: its disconnect goes when the hold ends.
      expect(of('hold-alone')?.kinds).toEqual(['disconnected']);
      expect((of('hold-alone')?.at ?? 0) - dropped).toBeGreaterThanOrEqual(holdMs - 50);
      await waitFor(async () => relay.depth() === 0 && (await inbox.pendingCount()) === 0, { what: 'inbox drained', timeoutMs: 10_000 });
    } finally {
      await relay.stop();
    }
  });

  it('signals a device that keeps dropping at least once per hold, however often new events come', async () => {
    const signals: number[] = [];
    const deliver = (_clientId: string, events: PresenceEvent[]): Promise<void> => {
      signals.push(events.length);
      return Promise.resolve();
    };
    const holdMs = 2_000;
    const relay = new PresenceRelay({ deliver, inbox, metrics: new WebhookMetrics(), logger: pino({ level: 'silent' }) }, { ...DEFAULT_RELAY_OPTIONS, sweepIntervalMs: 100, bucketMs: 500, disconnectHoldMs: holdMs });
    relay.start();
    try {
      // A session that starts and ends every 250 ms, for 3 holds: each write ends with a disconnect.
      const start = Date.now();
      while (Date.now() - start < 3 * holdMs) {
        const at = Date.now();
        const events = [connected('hold-flapper', at), disconnected('hold-flapper', at, at + 5)];
        const bucket = await relay.beginWrite();
        const { fresh } = await inbox.store(bucket, events, []);
        relay.finishWrite(bucket, events.filter((e) => fresh.has(e.key)));
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      // Not held back until the flapping stops: signalled during it, more than once.
      expect(signals.length).toBeGreaterThanOrEqual(2);
      await waitFor(async () => relay.depth() === 0 && (await inbox.pendingCount()) === 0, { what: 'inbox drained', timeoutMs: 10_000 });
    } finally {
      await relay.stop();
    }
  });
});
