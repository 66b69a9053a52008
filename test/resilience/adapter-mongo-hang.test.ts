import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectHistory, type History } from '../../src/store';
import { adapterMongoOptions, createWebhookAdapter, type WebhookAdapter } from '../../src/webhook/adapter';
import { ownFerretDb, temporalClient, uniqueName, waitFor, type OwnServer } from '../harness';
import { connectedEvent, postEvents } from '../support/presence-env';

/**
 * A hung MongoDB (FerretDB frozen with SIGSTOP: its sockets stay open and nothing answers) makes
 * the adapter answer 503 within a few seconds, which EMQX retries, instead of holding requests; once
 * it answers again, requests get 200 and every event posted is stored and signalled. The file runs
 * its own FerretDB, so freezing it disturbs no other file.
 */

const STORE_TIMEOUT_MS = 2_000;
/** How long an answer may take while MongoDB hangs: the store timeout plus a margin for a busy machine. */
const QUICK_MS = STORE_TIMEOUT_MS + 2_500;

let ferret: OwnServer;
let mongo: { history: History; close(): Promise<void> };
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let adapter: WebhookAdapter;
let url: string;

beforeAll(async () => {
  ferret = await ownFerretDb();
  mongo = await connectHistory(ferret.address, uniqueName('hang'), adapterMongoOptions(STORE_TIMEOUT_MS));
  temporal = await temporalClient();
  adapter = createWebhookAdapter({
    history: mongo.history,
    temporal: temporal.client,
    taskQueue: uniqueName('mongo-hang'),
    token: 'test-webhook-token-0123456789',
    storeTimeoutMs: STORE_TIMEOUT_MS,
    relay: { sweepIntervalMs: 200, bucketMs: 1_000 },
  });
  url = `http://127.0.0.1:${await adapter.listen('127.0.0.1', 0)}`;
}, 120_000);

afterAll(async () => {
  await adapter?.close();
  await mongo?.close();
  await temporal?.close();
  await ferret?.stop();
});

interface Attempt {
  status: number;
  ms: number;
  at: number;
}

/** Posts one event as EMQX does: again after each 503 until it is accepted. */
async function deliver(body: unknown, attempts: Attempt[]): Promise<void> {
  for (;;) {
    const started = Date.now();
    const { status } = await postEvents(url, body, { authorization: 'Bearer test-webhook-token-0123456789' });
    attempts.push({ status, ms: Date.now() - started, at: started });
    if (status === 200) return;
    expect(status).toBe(503);
  }
}

describe('webhook adapter with a hung MongoDB', () => {
  it('answers 503 within seconds while MongoDB hangs, 200 afterwards, and loses nothing', async () => {
    const attempts: Attempt[] = [];
    const ids = Array.from({ length: 20 }, (_, i) => `hang-dev-${i}`);
    let sent = 0;
    let posting = true;
    // Four senders, like EMQX's pool, each delivering event after event.
    const senders = Array.from({ length: 4 }, async () => {
      while (posting) {
        const n = sent++;
        await deliver(connectedEvent(ids[n % ids.length] as string, 1_000_000 + n), attempts);
      }
    });
    await waitFor(() => attempts.filter((a) => a.status === 200).length >= 20, { timeoutMs: 20_000, what: 'events accepted before the hang' });

    ferret.freeze();
    const frozenAt = Date.now();
    try {
      await waitFor(() => attempts.filter((a) => a.at > frozenAt && a.status === 503).length >= 8, { timeoutMs: 30_000, what: '503 answers while MongoDB hangs' });
    } finally {
      ferret.thaw();
    }
    const thawedAt = Date.now();
    await waitFor(() => attempts.filter((a) => a.at > thawedAt && a.status === 200).length >= 20, { timeoutMs: 60_000, what: '200 answers once MongoDB answers again' });
    posting = false;
    await Promise.all(senders);

    // While it hung, every answer came quickly, and they were 503s.
    const during = attempts.filter((a) => a.at >= frozenAt && a.at + a.ms <= thawedAt);
    expect(during.length).toBeGreaterThanOrEqual(4);
    expect(during.every((a) => a.status === 503)).toBe(true);
    expect(Math.max(...during.map((a) => a.ms))).toBeLessThan(QUICK_MS);

    // Nothing lost: every event is stored once and signalled.
    const stored = await mongo.history.db.collection('connection_events').countDocuments();
    expect(stored).toBe(sent);
    await waitFor(() => adapter.metrics.signalled >= sent, { timeoutMs: 60_000, what: 'every stored event signalled' });
  }, 180_000);
});
