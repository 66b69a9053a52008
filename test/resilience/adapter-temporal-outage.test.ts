import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presenceWorkflowId } from '../../src/contracts/presence';
import { ownTemporal, waitFor, waitForProgress, type OwnServer } from '../harness';
import { connectedEvent, disconnectedEvent, postEvents, recordDevices, startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * The webhook adapter recovers by itself from a Temporal outage of any length: while Temporal is
 * frozen (SIGSTOP: sockets open, nothing answered, as a hung server) a storm of connects and
 * disconnects keeps arriving and is accepted (stored in MongoDB; a request answered 503 is sent
 * again, as EMQX does); once Temporal answers again
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

/**
 * Posts rounds of events for `ids` until `stop` resolves. A round answered 503 is posted again, as
 * EMQX's HTTP action does, until it is accepted; `resent` counts those rounds and `reasons` says why.
 */
async function storm(ids: string[], stop: Promise<void>): Promise<{ rounds: number; resent: number; reasons: string[]; statuses: Map<number, number> }> {
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const statuses = new Map<number, number>();
  const reasons: string[] = [];
  let rounds = 0;
  let resent = 0;
  const base = Date.now();
  while (!stopped) {
    const connectedAt = base + rounds * 10;
    const body = ids.flatMap((id) => [connectedEvent(id, connectedAt), disconnectedEvent(id, connectedAt, connectedAt + 5)]);
    for (let attempt = 0; ; attempt++) {
      const answer = await postEvents(adapterUrl, body);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      if (answer.status !== 503) break;
      if (attempt === 0) resent++;
      if (reasons.length < 5) reasons.push(JSON.stringify(answer.body));
      await new Promise((r) => setTimeout(r, 1_000));
    }
    rounds++;
    await new Promise((r) => setTimeout(r, ROUND_INTERVAL_MS));
  }
  return { rounds, resent, reasons, statuses };
}

/**
 * Where delivery stands: done when every device's workflow has applied every round (one session
 * started and ended per round); progress counts the sessions applied so far.
 */
async function delivery(ids: string[], rounds: number): Promise<{ done: boolean; progress: number; detail: string }> {
  const behind: string[] = [];
  let progress = 0;
  for (const id of ids) {
    const view = await env.ops.presenceOf(id);
    progress += (view?.counters.sessionsStarted ?? 0) + (view?.counters.sessionsEnded ?? 0);
    if (view?.counters.sessionsStarted !== rounds || view.counters.sessionsEnded !== rounds || view.presence !== 'offline') {
      const c = view?.counters;
      behind.push(
        `${id}: ${view && c ? `${c.sessionsStarted}/${c.sessionsEnded} ${view.presence} (events ${c.events}, stale ${c.stale}, duplicates ${c.duplicates}, coalesced ${c.coalesced}, runs ${c.runs})` : 'no workflow'}`,
      );
    }
  }
  if (behind.length === 0) return { done: true, progress, detail: '' };
  const health = await healthz().catch((err: unknown) => ({ error: String(err) }));
  const mainHealth = await healthz(env.adapterUrl).catch((err: unknown) => ({ error: String(err) }));
  const server = temporal.exitStatus();
  return {
    done: false,
    progress,
    detail: [
      `${behind.length}/${ids.length} devices behind ${rounds} rounds (${behind.slice(0, 3).join('; ')})`,
      `storm adapter /healthz ${JSON.stringify(health)}, the env's adapter /healthz ${JSON.stringify(mainHealth)}`,
      `workers: ${env.workerStates().join('; ')}`,
      `inbox: ${await env.history.db.collection('presence_inbox_leases').countDocuments().catch(() => -1)} leases, ${await inboxEvents(ids)} of these devices' events still in buckets`,
      `workflow of ${ids[0] as string}: ${await describeWorkflow(ids[0] as string)}`,
      server ? `the Temporal server exited ${JSON.stringify(server)}:\n${temporal.logTail()}` : 'the Temporal server is running',
    ].join('\n'),
  };
}

async function healthz(url = adapterUrl): Promise<{ status: string; temporal: string; inboxDepth: number }> {
  const res = await request(`${url}/healthz`);
  return (await res.body.json()) as { status: string; temporal: string; inboxDepth: number };
}

/** How many of these devices' events the inbox buckets still hold (delivered or not). */
async function inboxEvents(ids: string[]): Promise<number> {
  const wanted = new Set(ids);
  let count = 0;
  for (const name of await env.history.db.listCollections({}, { nameOnly: true }).toArray()) {
    if (!name.name.startsWith('presence_inbox_') || name.name.endsWith('leases')) continue;
    for (const doc of await env.history.db.collection<{ events?: { clientId: string }[] }>(name.name).find({}).toArray()) {
      count += (doc.events ?? []).filter((e) => wanted.has(e.clientId)).length;
    }
  }
  return count;
}

/** A device workflow as the Temporal server sees it: status, history length, pending task. */
async function describeWorkflow(clientId: string): Promise<string> {
  try {
    const description = await env.temporal.workflow.getHandle(presenceWorkflowId(clientId)).describe();
    const pending = description.raw.pendingWorkflowTask;
    const activities = (description.raw.pendingActivities ?? []).map(
      (a) => `${a.activityType?.name ?? '?'} ${String(a.state)} attempt ${a.attempt ?? 0}${a.lastFailure?.message ? ` (${a.lastFailure.message})` : ''}`,
    );
    const history = await env.temporal.workflow.getHandle(presenceWorkflowId(clientId)).fetchHistory();
    const tail = (history.events ?? []).slice(-10).map((e) => {
      const failure = e.workflowTaskFailedEventAttributes?.failure?.message;
      return `${String(e.eventType)}${failure ? ` (${failure.slice(0, 300)})` : ''}`;
    });
    return `${description.status.name}, ${description.historyLength} events (last: ${tail.join(', ')}), pending workflow task ${pending ? `${String(pending.state)} attempt ${pending.attempt ?? 0}` : 'none'}, pending activities: ${activities.join('; ') || 'none'}`;
  } catch (err) {
    return `describe failed: ${String(err)}`;
  }
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
  const { rounds, resent, reasons, statuses } = await stormDone;
  // Accepted (200) or to be resent (503: MongoDB did not store the events in time on a loaded
  // machine); never refused. The Temporal outage itself must not stop the adapter accepting: most
  // rounds go through at the first try.
  expect([...statuses.keys()].filter((status) => status !== 200 && status !== 503)).toEqual([]);
  expect(resent, `rounds answered 503 first: ${reasons.join(' | ')}`).toBeLessThanOrEqual(Math.ceil(rounds * 0.1));

  const stored = await env.history.db.collection('connection_events').countDocuments({ clientId: { $in: ids } });
  expect(stored).toBe(rounds * 2 * DEVICES);
  const thawedAt = frozenAt + outageMs;
  // Delivery must keep moving until done; how fast it goes depends on the machine's load (the
  // recovery rate is a benchmark figure: bench/soak.ts), so the bound is on a stall, not a speed.
  await waitForProgress(() => delivery(ids, rounds), { stallMs: 60_000, timeoutMs: 300_000, what: `every stored event delivered after the ${label} outage` });
  console.log(`[outage ${label}] ${rounds} rounds (${stored} events) delivered ${Math.round((Date.now() - thawedAt) / 1000)} s after Temporal thawed`);
  await waitFor(async () => {
    const health = await healthz();
    return health.status === 'ok' && health.temporal === 'up' && health.inboxDepth === 0;
  }, { timeoutMs: 30_000, what: '/healthz ok with Temporal up and nothing pending' });
}

describe('webhook adapter through Temporal outages', () => {
  it('delivers every stored event after a 15 s outage', async () => {
    await outage('15s', 15_000);
  }, 360_000);

  it('delivers every stored event after a 45 s outage', async () => {
    await outage('45s', 45_000);
  }, 420_000);

  it('delivers every stored event after a 3 min outage', async () => {
    await outage('3m', 180_000);
  }, 540_000);
});
