import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownTemporal, waitFor, type OwnServer } from '../harness';
import { connectedEvent, disconnectedEvent, postEvents, recordDevices, startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * The webhook adapter recovers by itself from a Temporal outage of any length: while Temporal is
 * frozen (SIGSTOP: sockets open, nothing answered, as a hung server) a storm of connects and
 * disconnects keeps arriving and is answered 200 (stored in MongoDB); once Temporal answers again
 * every stored event reaches its device workflow and /healthz reports Temporal up, without
 * restarting anything.
 *
 * The file runs its own Temporal server (freezing the shared one would stall other files). Duration:
 * about 5 minutes (outages of 15 s, 45 s and 3 min, plus the storms and recovery around them).
 */

let temporal: OwnServer;
let env: PresenceTestEnv;
let adapterUrl: string;

const DEVICES = 12;
/** One round of the storm: every device connects and disconnects once. */
const ROUND_INTERVAL_MS = 500;

beforeAll(async () => {
  temporal = await ownTemporal();
  env = await startPresenceEnv({ temporalAddress: temporal.address });
  // Production backoff shape, shorter: probes at most 5 s apart, signals given up after 3 s.
  const extra = await env.extraAdapter({ relay: { sweepIntervalMs: 200, bucketMs: 1_000, adoptAfterMs: 60_000, maxBackoffMs: 5_000 }, signalDeadlineMs: 3_000 });
  adapterUrl = extra.url;
}, 180_000);

afterAll(async () => {
  await env?.close();
  await temporal?.stop();
});

/** Posts rounds of events for `ids` until `stop` resolves; every answer must be 200. */
async function storm(ids: string[], stop: Promise<void>): Promise<{ rounds: number; statuses: Map<number, number> }> {
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const statuses = new Map<number, number>();
  let rounds = 0;
  const base = Date.now();
  while (!stopped) {
    const connectedAt = base + rounds * 10;
    const body = ids.flatMap((id) => [connectedEvent(id, connectedAt), disconnectedEvent(id, connectedAt, connectedAt + 5)]);
    const { status } = await postEvents(adapterUrl, body);
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    rounds++;
    await new Promise((r) => setTimeout(r, ROUND_INTERVAL_MS));
  }
  return { rounds, statuses };
}

/** Every device's workflow has applied every round: one session started and ended per round. */
async function allDelivered(ids: string[], rounds: number): Promise<boolean> {
  for (const id of ids) {
    const view = await env.ops.presenceOf(id);
    if (view?.counters.sessionsStarted !== rounds || view.counters.sessionsEnded !== rounds || view.presence !== 'offline') return false;
  }
  return true;
}

async function healthz(): Promise<{ status: string; temporal: string; inboxDepth: number }> {
  const res = await request(`${adapterUrl}/healthz`);
  return (await res.body.json()) as { status: string; temporal: string; inboxDepth: number };
}

async function outage(label: string, outageMs: number): Promise<void> {
  const ids = Array.from({ length: DEVICES }, (_, i) => `outage-${label}-${i}`);
  // Provisioned devices: only they get device workflows (docs/presence.md).
  await recordDevices(env.history, ids);
  let endStorm = (): void => undefined;
  const stormDone = storm(ids, new Promise<void>((resolve) => (endStorm = resolve)));
  // Some rounds reach the workflows first, so the outage hits signals in flight.
  await waitFor(async () => (await env.ops.presenceOf(ids[0] as string))?.counters.sessionsStarted, { timeoutMs: 30_000, what: 'the storm reaching the workflows' });
  temporal.freeze();
  const frozenAt = Date.now();
  try {
    await waitFor(() => Date.now() - frozenAt >= outageMs, { timeoutMs: outageMs + 5_000, intervalMs: 500, what: 'the outage to last' });
    // The adapter saw the outage (its signals failed), while answering 200.
    expect((await healthz()).temporal).toBe('down');
  } finally {
    temporal.thaw();
  }
  // The storm goes on a little after Temporal is back, then stops.
  await waitFor(() => Date.now() - frozenAt >= outageMs + 3_000, { timeoutMs: 10_000, intervalMs: 200, what: 'the storm after the outage' });
  endStorm();
  const { rounds, statuses } = await stormDone;
  expect([...statuses.keys()]).toEqual([200]);

  const stored = await env.history.db.collection('connection_events').countDocuments({ clientId: { $in: ids } });
  expect(stored).toBe(rounds * 2 * DEVICES);
  await waitFor(() => allDelivered(ids, rounds), { timeoutMs: 90_000, intervalMs: 1_000, what: `every stored event delivered after the ${label} outage` });
  await waitFor(async () => {
    const health = await healthz();
    return health.status === 'ok' && health.temporal === 'up' && health.inboxDepth === 0;
  }, { timeoutMs: 30_000, what: '/healthz ok with Temporal up and nothing pending' });
}

describe('webhook adapter through Temporal outages', () => {
  it('delivers every stored event after a 15 s outage', async () => {
    await outage('15s', 15_000);
  }, 180_000);

  it('delivers every stored event after a 45 s outage', async () => {
    await outage('45s', 45_000);
  }, 240_000);

  it('delivers every stored event after a 3 min outage', async () => {
    await outage('3m', 180_000);
  }, 420_000);
});
