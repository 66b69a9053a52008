import { describe, expect, it } from 'vitest';
import { createTokenCheck } from '../../src/http/shared-secret';
import { InvalidEventError, parseEventBody, toPresenceEvent } from '../../src/webhook/emqx-events';
import { GroupCommit } from '../../src/webhook/group-commit';
import { SignalThrottle } from '../../src/webhook/signal-throttle';

/** The adapter's pure parts on their own: body parsing, token check, group commit, throttle. */

const received = new Date('2026-01-01T00:00:00.000Z');

describe('parseEventBody', () => {
  it('gives distinct events distinct keys whatever their client ids, topics and message ids hold', () => {
    // Each pair collided when keys were the fields joined with "|": the second event of a pair was
    // then dropped as a duplicate of the first.
    const subscribed = (clientid: string, topic: string) => ({ event: 'session.subscribed', clientid, topic, qos: 0, timestamp: 1 });
    const pairs = [
      [subscribed('a|session.subscribed|x', 'y'), subscribed('a', 'x|session.subscribed|y')],
      [subscribed('message', 't'), { event: 'message.publish', id: 'session.subscribed|t|1', clientid: 'c', topic: 'u', qos: 0, payload: '', publish_received_at: 1 }],
    ];
    for (const pair of pairs) {
      const keys = parseEventBody(pair, received).deviceEvents.map((e) => e.key);
      expect(keys).toHaveLength(2);
      expect(new Set(keys).size).toBe(2);
    }
    // Still stable: the same event always gets the same key.
    expect(parseEventBody(pairs[0], received).deviceEvents[0]?.key).toBe(parseEventBody(pairs[0], received).deviceEvents[0]?.key);
  });

  it('turns connect and disconnect events into stored events with stable keys', () => {
    const parsed = parseEventBody(
      [
        { event: 'client.connected', clientid: 'dev-1', connected_at: 1_000, timestamp: 1_001, username: 'undefined', node: 'emqx@127.0.0.1' },
        { event: 'client.disconnected', clientid: 'dev-1', connected_at: 1_000, disconnected_at: 5_000, reason: 'keepalive_timeout', timestamp: 5_000 },
      ],
      received,
    );
    expect(parsed.connections.map((c) => c.key)).toEqual(['dev-1|connected|1000', 'dev-1|disconnected|1000']);
    expect(parsed.connections[1]).toMatchObject({ event: 'disconnected', at: new Date(5_000).toISOString(), reason: 'keepalive_timeout', receivedAt: received.toISOString() });
    expect(toPresenceEvent(parsed.connections[1]!)).toEqual({ kind: 'disconnected', key: 'dev-1|disconnected|1000', connectedAt: 1_000, disconnectedAt: 5_000, reason: 'keepalive_timeout' });
  });

  it('accepts and counts event types it does not use', () => {
    const parsed = parseEventBody({ event: 'client.connack', clientid: 'dev-1', reason_code: 'success' }, received);
    expect(parsed).toMatchObject({ connections: [], deviceEvents: [], names: ['client.connack'], ignored: 1 });
  });

  it('names the bad field, with its position in an array', () => {
    const bad = (body: unknown): string => {
      try {
        parseEventBody(body, received);
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidEventError);
        return (err as Error).message;
      }
      throw new Error('expected a rejection');
    };
    expect(bad({ event: 'client.connected', clientid: 'dev-1' })).toMatch(/^connected_at: /);
    expect(bad([{ event: 'x' }, { event: 'client.disconnected', clientid: 'dev-1', connected_at: 1, disconnected_at: 2 }])).toMatch(/^\[1\]\.reason: /);
    expect(bad({ event: 'client.connected', clientid: 'a'.repeat(129), connected_at: 1 })).toMatch(/^clientid: must be at most 128/);
    expect(bad({ event: 'session.subscribed', clientid: 'dev-1', topic: 't', qos: 3, timestamp: 1 })).toMatch(/^qos: must be 0, 1 or 2/);
    expect(bad([])).toMatch(/^body: must hold at least one event/);
    expect(bad('text')).toMatch(/^body: must be an event object/);
    expect(bad({ clientid: 'dev-1' })).toMatch(/^event: must be a string/);
    expect(bad([{ event: 'x' }, { event: '' }])).toMatch(/^\[1\]\.event: must not be empty/);
    expect(bad({ event: 'x'.repeat(129) })).toMatch(/^event: must be at most 128 characters/);
  });
});

describe('createTokenCheck', () => {
  const matches = createTokenCheck('the-shared-secret-123');

  it('takes the token as a Bearer header or as x-emqx-token, and nothing else', () => {
    expect(matches({ authorization: 'Bearer the-shared-secret-123' })).toBe(true);
    expect(matches({ authorization: 'bearer   the-shared-secret-123' })).toBe(true);
    expect(matches({ 'x-emqx-token': 'the-shared-secret-123' })).toBe(true);
    expect(matches({ authorization: 'Bearer the-shared-secret-12' })).toBe(false);
    expect(matches({ authorization: 'Basic the-shared-secret-123' })).toBe(false);
    expect(matches({ 'x-emqx-token': '' })).toBe(false);
    expect(matches({})).toBe(false);
  });
});

describe('GroupCommit', () => {
  it('writes what arrives during a write together in the next one, and hands each caller its result', async () => {
    const writes: number[][] = [];
    let release: () => void = () => undefined;
    const commit = new GroupCommit<number, number>(
      async (items) => {
        writes.push(items);
        if (writes.length === 1) await new Promise<void>((r) => (release = r));
        return items.length;
      },
      { maxItems: 100, maxConcurrent: 1 },
    );
    const first = commit.submit([1]);
    const later = [commit.submit([2]), commit.submit([3, 4])];
    release();
    expect(await first).toBe(1);
    expect(await Promise.all(later)).toEqual([3, 3]);
    expect(writes).toEqual([[1], [2, 3, 4]]);
  });
});

describe('SignalThrottle', () => {
  it('halves the signal limit while answers are slow and grows it back when they are quick', () => {
    const limits: number[] = [];
    const throttle = new SignalThrottle({ max: 32, slowMs: 20, fastMs: 10 }, (limit) => limits.push(limit));
    expect(throttle.limit()).toBe(8);
    const window = (ms: number): void => {
      for (let i = 0; i < 50; i++) throttle.observe(ms);
      (throttle as unknown as { adjust(): void }).adjust();
    };
    window(80);
    window(80);
    expect(throttle.limit()).toBe(2);
    window(2);
    expect(throttle.limit()).toBe(3);
    expect(limits).toEqual([4, 2, 3]);
  });
});
