import { describe, expect, it } from 'vitest';
import { CAMPAIGN_CHUNK_SIZE, CampaignRequest, chunkSizeFor, emptyCounts, OfflinePolicy, RetryPolicy, Rollout, type TargetPolicy } from '../../src/domain/schemas/campaign';
import { renderMessage, utf8Length } from '../../src/domain/schemas/campaign-message';
import { abortReason, batchAllowance, BULK_REQUESTS_PER_BATCH, initialPacer, nextSlot, ramp, refund, reserve } from '../../src/domain/campaign-rollout';
import { ChunkLedger } from '../../src/domain/campaign-chunk';
import { applyOutcome, cancel, expire, NEVER_ATTEMPTED, retryNow, UNKNOWN_OUTCOME_ERROR, wake, type TargetState } from '../../src/domain/campaign-target-state';
import { InputError, parseInput } from '../../src/domain/input-error';
import { decodeRuns, encodeRuns } from '../../src/store/campaigns';
import { parseTargetsFile } from '../../src/starter/cli/campaign-file';

const policy = (overrides: { retry?: unknown; offline?: unknown; inProgressTimeoutMs?: number } = {}): TargetPolicy => ({
  retry: RetryPolicy.parse(overrides.retry ?? {}),
  offline: OfflinePolicy.parse(overrides.offline ?? {}),
  ...(overrides.inProgressTimeoutMs !== undefined ? { inProgressTimeoutMs: overrides.inProgressTimeoutMs } : {}),
});

describe('campaign message templates', () => {
  const template = { topic: 'fw/${clientid}/cmd', payload: { format: 'json' as const, text: '{"v":"${fw}","id":"${clientid}"}' }, qos: 1 as const, retain: false };

  it('fills ${clientid} and per-target values; JSON values are escaped', () => {
    expect(renderMessage(template, { clientId: 'd1', values: { fw: 'a"b' } })).toEqual({
      topic: 'fw/d1/cmd',
      payload: '{"v":"a\\"b","id":"d1"}',
      binary: false,
      qos: 1,
      retain: false,
    });
  });

  it('checks JSON payloads: values inside strings always fit; values outside strings must make valid JSON', () => {
    const inStrings = { ...template, payload: { format: 'json' as const, text: '{"note":"${fw}"}' } };
    for (const fw of ['x', '"quoted"', '\\ back', '} {', '\u0000', '\t', '\u2028', 'caf\u00e9 \ud83d\ude00', 'lone \ud800', '${fw}']) {
      const payload = renderMessage(inStrings, { clientId: 'd', values: { fw } }).payload;
      expect(JSON.parse(payload)).toEqual({ note: fw });
      expect(payload).toBe(`{"note":${JSON.stringify(fw)}}`);
    }
    const bare = { ...template, payload: { format: 'json' as const, text: '{"n":${fw}}' } };
    expect(renderMessage(bare, { clientId: 'd', values: { fw: '7' } }).payload).toBe('{"n":7}');
    expect(() => renderMessage(bare, { clientId: 'd', values: { fw: 'seven' } })).toThrow(/not valid JSON/);
    const broken = { ...template, payload: { format: 'json' as const, text: '{"note":"${fw}"' } };
    expect(() => renderMessage(broken, { clientId: 'd', values: { fw: 'x' } })).toThrow(/not valid JSON/);
  });

  it('rejects a missing value, and values that put wildcards into the topic', () => {
    expect(() => renderMessage(template, { clientId: 'd1' })).toThrow(/no value for \$\{fw\}/);
    expect(() => renderMessage({ ...template, topic: 'fw/${fw}' }, { clientId: 'd1', values: { fw: '#' } })).toThrow(/wildcards/);
  });

  it('validates requests at the boundary, naming the field', () => {
    const base = { targets: { list: [{ clientId: 'd1' }] }, message: { topic: 'a/${clientid}', payload: { format: 'text', text: 'x' } } };
    expect(() => parseInput(CampaignRequest, { ...base, message: { ...base.message, topic: 'a/#' } })).toThrow(/message.topic: must be a topic name without wildcards/);
    expect(() => parseInput(CampaignRequest, { ...base, message: { ...base.message, qos: 3 } })).toThrow(/message.qos: must be 0, 1 or 2/);
    expect(() => parseInput(CampaignRequest, { ...base, rollout: { maximumPerMinute: 0 } })).toThrow(InputError);
    expect(() => parseInput(CampaignRequest, { ...base, campaignId: 'has space' })).toThrow(/campaignId/);
    expect(() => parseInput(CampaignRequest, { ...base, targets: { list: [] } })).toThrow(/no targets/);
    expect(() => parseInput(CampaignRequest, { ...base, message: { ...base.message, payload: { format: 'base64', data: 'not base64!' } } })).toThrow(/must be base64/);
    expect(parseInput(CampaignRequest, base)).toMatchObject({ transport: 'rest', rollout: { batchSize: 500, concurrency: 4 }, retry: { transient: { retries: 3 } } });
  });
});

describe('campaign message size', () => {
  it('counts UTF-8 bytes as TextEncoder does, without encoding', () => {
    const samples = ['', 'plain ascii', 'caf\u00e9', '\u20ac 100', 'emoji \u{1F680} ok', 'lone \ud800 high', 'lone \udc00 low', 'end \ud83d'];
    for (const text of samples) expect(utf8Length(text), JSON.stringify(text)).toBe(new TextEncoder().encode(text).length);
  });
});

describe('campaign target states', () => {
  it('delivered is final and keeps the message id', () => {
    expect(applyOutcome(NEVER_ATTEMPTED, { kind: 'delivered', messageId: 'M1' }, policy(), 1_000)).toEqual({
      status: 'delivered',
      attempts: 1,
      firstAt: 1_000,
      finishedAt: 1_000,
      messageId: 'M1',
    });
  });

  it('retries transient errors with exponential backoff, then fails with the last error', () => {
    const p = policy({ retry: { transient: { retries: 2, backoffMs: 100 } } });
    let s: TargetState = applyOutcome(NEVER_ATTEMPTED, { kind: 'transient', error: '503' }, p, 0);
    expect(s).toMatchObject({ status: 'retrying', nextAt: 100, transientCount: 1 });
    s = applyOutcome(s, { kind: 'transient', error: '503 again' }, p, 100);
    expect(s).toMatchObject({ status: 'retrying', nextAt: 300 });
    s = applyOutcome(s, { kind: 'transient', error: 'timeout' }, p, 300);
    expect(s).toMatchObject({ status: 'failed', attempts: 3, lastError: 'timeout' });
  });

  it('an unknown outcome ends the target failed by default and is retried as transient only when asked', () => {
    const unknown = { kind: 'unknown' as const, error: 'EMQX POST /publish/bulk timed out after 10000 ms' };
    expect(applyOutcome(NEVER_ATTEMPTED, unknown, policy(), 5)).toEqual({
      status: 'failed',
      attempts: 1,
      firstAt: 5,
      finishedAt: 5,
      lastError: `${UNKNOWN_OUTCOME_ERROR}: ${unknown.error}`,
    });
    const retry = policy({ retry: { transient: { retries: 1, backoffMs: 100 }, unknownOutcome: 'retry' } });
    const once = applyOutcome(NEVER_ATTEMPTED, unknown, retry, 0);
    expect(once).toMatchObject({ status: 'retrying', nextAt: 100, transientCount: 1, lastError: unknown.error });
    expect(applyOutcome(once, unknown, retry, 100)).toMatchObject({ status: 'failed', attempts: 2, lastError: unknown.error });
    expect(() => RetryPolicy.parse({ unknownOutcome: 'twice' })).toThrow(/unknownOutcome/);
  });

  it('no subscriber: retries, then waits (wait-offline) or ends offline', () => {
    const retrying = policy({ retry: { noSubscriber: { retries: 1, backoffMs: 50 } } });
    const once = applyOutcome(NEVER_ATTEMPTED, { kind: 'no_subscriber' }, retrying, 0);
    expect(once).toMatchObject({ status: 'retrying', nextAt: 50 });
    expect(applyOutcome(once, { kind: 'no_subscriber' }, retrying, 50)).toMatchObject({ status: 'offline', attempts: 2 });
    const waiting = applyOutcome(NEVER_ATTEMPTED, { kind: 'no_subscriber' }, policy({ offline: { wait: true, recheckIntervalMs: 5_000 } }), 0);
    expect(waiting).toMatchObject({ status: 'waiting', nextAt: 5_000 });
  });

  it('a reconnect makes a waiting target due now, with a few quick retries', () => {
    const p = policy({ offline: { wait: true, recheckIntervalMs: 60_000, wakeRetries: 2, wakeBackoffMs: 1_000 } });
    const waiting = applyOutcome(NEVER_ATTEMPTED, { kind: 'no_subscriber' }, p, 0);
    const woken = wake(waiting, p, 10_000);
    expect(woken).toMatchObject({ status: 'waiting', nextAt: 10_000, wakeLeft: 2 });
    const first = applyOutcome(woken, { kind: 'no_subscriber' }, p, 10_000);
    expect(first).toMatchObject({ nextAt: 11_000, wakeLeft: 1 });
    const second = applyOutcome(first, { kind: 'no_subscriber' }, p, 11_000);
    expect(second).toMatchObject({ nextAt: 13_000, wakeLeft: 0 });
    expect(applyOutcome(second, { kind: 'no_subscriber' }, p, 13_000)).toMatchObject({ status: 'waiting', nextAt: 73_000 });
    expect(wake({ status: 'delivered', attempts: 1 }, p, 0)).toEqual({ status: 'delivered', attempts: 1 });
  });

  it('a device found connected just after its target began waiting gets one more try now, without quick retries', () => {
    const p = policy({ offline: { wait: true, recheckIntervalMs: 60_000, wakeRetries: 2, wakeBackoffMs: 1_000 } });
    const waiting = applyOutcome(NEVER_ATTEMPTED, { kind: 'no_subscriber' }, p, 0);
    const again = retryNow(waiting, 5);
    expect(again).toMatchObject({ status: 'waiting', nextAt: 5 });
    expect(again.wakeLeft).toBeUndefined();
    // Still no subscriber: back to the recheck interval.
    expect(applyOutcome(again, { kind: 'no_subscriber' }, p, 5)).toMatchObject({ status: 'waiting', nextAt: 60_005, attempts: 2 });
    const failed = applyOutcome(NEVER_ATTEMPTED, { kind: 'transient', error: '503' }, p, 0);
    expect(retryNow(failed, 5)).toBe(failed);
  });

  it('ends a target that is still retrying after the in-progress timeout as timed_out', () => {
    const p = policy({ retry: { transient: { retries: 10, backoffMs: 1_000 } }, inProgressTimeoutMs: 2_500 });
    const a = applyOutcome(NEVER_ATTEMPTED, { kind: 'transient', error: 'e' }, p, 0);
    const b = applyOutcome(a, { kind: 'transient', error: 'e' }, p, 1_000);
    expect(b).toMatchObject({ status: 'timed_out', lastError: expect.stringContaining('still failing') });
  });

  it('at the deadline: waiting ends offline, retrying timed out, untried cancelled; cancel keeps final states', () => {
    const waiting: TargetState = { status: 'waiting', attempts: 2, lastFailure: 'no_subscriber' };
    expect(expire(waiting, 5)).toMatchObject({ status: 'offline', finishedAt: 5 });
    expect(expire({ status: 'retrying', attempts: 1, lastFailure: 'transient', lastError: '503' }, 5)).toMatchObject({ status: 'timed_out' });
    expect(expire(NEVER_ATTEMPTED, 5)).toMatchObject({ status: 'cancelled' });
    expect(cancel(waiting, 'stop', 5)).toMatchObject({ status: 'cancelled', lastError: 'stop' });
    expect(cancel({ status: 'delivered', attempts: 1 }, 'stop', 5)).toEqual({ status: 'delivered', attempts: 1 });
  });

  it('keeps a chunk ledger: a letter per finished target, open states in full, counts and next due time', () => {
    const ledger = new ChunkLedger(4);
    expect(ledger.nextDueAt()).toBe(0);
    ledger.set(0, { status: 'delivered', attempts: 2, transientCount: 1, messageId: 'M' });
    ledger.set(1, { status: 'waiting', attempts: 1, nextAt: 900 });
    ledger.set(2, { status: 'retrying', attempts: 1, nextAt: 400 });
    ledger.set(3, { status: 'offline', attempts: 1 });
    expect(ledger.counts()).toEqual({ ...emptyCounts(4), delivered: 1, offline: 1, pending: 2, waiting: 1 });
    expect(ledger.nextDueAt()).toBe(400);
    expect(ledger.totalEffort()).toEqual({ attempted: 4, attempts: 5, transientErrors: 1 });
    const data = ledger.toData();
    expect(data.finished).toBe('d..o');
    const reloaded = new ChunkLedger(4, JSON.parse(JSON.stringify(data)) as typeof data);
    expect(reloaded.stateAt(0).status).toBe('delivered');
    expect(reloaded.stateAt(1)).toEqual({ status: 'waiting', attempts: 1, nextAt: 900 });
    expect(reloaded.openPositions()).toEqual([1, 2]);
    reloaded.set(1, { status: 'offline', attempts: 2 });
    reloaded.set(2, { status: 'failed', attempts: 3 });
    expect(reloaded.nextDueAt()).toBeNull();
  });

  it('stores a ledger\'s letters run-length encoded', () => {
    expect(encodeRuns('d'.repeat(998) + '..')).toBe('d998.2');
    expect(encodeRuns('')).toBe('');
    const letters = 'dd.offfffc' + 't'.repeat(12) + '.';
    expect(encodeRuns(letters)).toBe('d2.1o1f5c1t12.1');
    expect(decodeRuns(encodeRuns(letters))).toBe(letters);
    expect(decodeRuns('')).toBe('');
  });
});

describe('campaign rollout', () => {
  it('paces batches to the per-minute limit, a second or so at a time', () => {
    const rollout = Rollout.parse({ maximumPerMinute: 600 });
    let pacer = initialPacer(rollout);
    expect(batchAllowance(rollout, pacer)).toBe(10);
    pacer = reserve(pacer, 10, 0);
    expect(nextSlot(pacer)).toBe(1_000);
    pacer = refund(pacer, 4, 100);
    expect(nextSlot(pacer)).toBe(600);
    // With no limit, a batch is a few bulk requests' worth, at most one chunk.
    const unlimited = Rollout.parse({ batchSize: 200 });
    expect(batchAllowance(unlimited, initialPacer(unlimited))).toBe(200 * BULK_REQUESTS_PER_BATCH);
    const large = Rollout.parse({ batchSize: 1_000 });
    expect(batchAllowance(large, initialPacer(large))).toBe(CAMPAIGN_CHUNK_SIZE);
    expect(nextSlot(reserve(initialPacer(unlimited), 200, 50))).toBe(0);
  });

  it('sizes chunks to fill whole rounds of concurrent batches, between one bulk request and CAMPAIGN_CHUNK_SIZE', () => {
    const rollout = { batchSize: 500, concurrency: 4 };
    // 25,000 targets: three rounds of 4 chunks (2,084 each), not 10 chunks of 2,500 with the last two in a round of their own.
    expect(chunkSizeFor(25_000, rollout)).toBe(2_084);
    expect(chunkSizeFor(10_000, rollout)).toBe(2_500);
    // Large campaigns: whole rounds of chunks just under the maximum.
    const size = chunkSizeFor(100_000, rollout);
    expect(size).toBeLessThanOrEqual(CAMPAIGN_CHUNK_SIZE);
    expect(Math.ceil(100_000 / size) % 4).toBe(0);
    expect(chunkSizeFor(1_000_000, { batchSize: 500, concurrency: 1 })).toBe(CAMPAIGN_CHUNK_SIZE);
    // Small campaigns: no chunk smaller than one bulk request.
    expect(chunkSizeFor(1_000, rollout)).toBe(500);
    expect(chunkSizeFor(3, { batchSize: 1, concurrency: 4 })).toBe(1);
    expect(chunkSizeFor(0, rollout)).toBe(500);
  });

  it('ramps exponentially after each step of successes, up to the maximum', () => {
    const rollout = Rollout.parse({ maximumPerMinute: 1_000, exponentialRate: { baseRatePerMinute: 100, incrementFactor: 2, numberOfSucceededTargets: 50 } });
    let pacer = initialPacer(rollout);
    expect(pacer.ratePerMinute).toBe(100);
    pacer = ramp(rollout, pacer, { delivered: 49, notified: 60 });
    expect(pacer.ratePerMinute).toBe(100);
    pacer = ramp(rollout, pacer, { delivered: 120, notified: 130 });
    expect(pacer.ratePerMinute).toBe(400);
    pacer = ramp(rollout, pacer, { delivered: 500, notified: 500 });
    expect(pacer.ratePerMinute).toBe(1_000);
  });

  it('aborts when enough targets executed and the failure share reaches the threshold', () => {
    const criteria = [{ failureType: 'failed' as const, minExecuted: 10, thresholdPercent: 20 }];
    expect(abortReason(criteria, { ...emptyCounts(100), delivered: 5, failed: 4, pending: 91 })).toBeNull();
    expect(abortReason(criteria, { ...emptyCounts(100), delivered: 8, failed: 2, pending: 90 })).toMatch(/2 of 10 executed targets ended failed \(20.0% >= 20%\)/);
    expect(abortReason([{ failureType: 'all', minExecuted: 4, thresholdPercent: 50 }], { ...emptyCounts(10), offline: 1, timedOut: 1, delivered: 2, pending: 6 })).toMatch(/did not succeed/);
  });
});

describe('campaign targets file', () => {
  it('reads one client id per line, skipping blanks and comments', () => {
    expect(parseTargetsFile('# fleet\nd1\n\n d2 \r\nd3\n')).toEqual([{ clientId: 'd1' }, { clientId: 'd2' }, { clientId: 'd3' }]);
  });

  it('reads a CSV with per-target template values', () => {
    expect(parseTargetsFile('clientId,fw,url\nd1,1.2,"https://x/a,b"\n')).toEqual([{ clientId: 'd1', values: { fw: '1.2', url: 'https://x/a,b' } }]);
  });

  it('names the line of every bad entry', () => {
    expect(() => parseTargetsFile('ok\nbad/one\nalso+bad')).toThrow(/line 2: clientId must not contain.*; line 3/);
    expect(() => parseTargetsFile('clientId,fw\nd1\n')).toThrow(/line 2: expected 2 fields, found 1/);
    expect(() => parseTargetsFile('clientId,bad-name\nd1,x\n')).toThrow(/column "bad-name"/);
  });
});
