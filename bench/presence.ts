import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { Pool, request } from 'undici';
import { startHttpProcess, startWorkerProcess } from '../devstack/app-processes';
import { freePort, type ServiceProcess } from '../devstack/services';
import { mapPooled } from '../src/activities/failures';
import { projectRoot } from '../src/config';
import { presenceWorkflowId } from '../src/domain/presence';
import { presenceQuery, type PresenceView } from '../src/contracts/presence';
import { memoryOf, round } from './cpu';
import { percentile, startBenchStack, type BenchStack } from './stack';
import { fleetActions, nonZero, totalActions, type ActionCounts } from './temporal-actions';

/**
 * bench/presence: the webhook adapter and the device workflows under a reconnect storm, on a
 * private stack (Temporal dev server, FerretDB, the EMQX-compatible broker), with the worker and
 * the adapter as their own processes, as in production.
 *
 * 1. http: EMQX event bodies posted straight to the adapter by BENCH_PRESENCE_CONCURRENCY senders
 *    (EMQX's in-flight window), one event per request as EMQX sends them: connect, disconnect,
 *    reconnect for every device. Once against the inbox adapter (src/webhook), once against a naive
 *    adapter that awaits one signal-with-start per event (bench/naive-adapter.ts).
 * 2. mqtt: BENCH_PRESENCE_DEVICES real MQTT devices connect, then all disconnect and reconnect at
 *    once; the broker's rule engine delivers the events to the inbox adapter.
 *    Then BENCH_PRESENCE_FLAP_DEVICES of them flap: BENCH_PRESENCE_FLAP_CYCLES times offline and
 *    online again, BENCH_PRESENCE_FLAP_PAUSE_MS each way (enough cycles to raise a flapping alarm).
 * Each phase waits until every device workflow shows the final state, then counts lost events
 * (stored events missing) and false alarms (any alarm: every device was back within the grace period).
 * The mqtt phase also counts the Temporal actions of each scenario (first connects, the bounce of
 * the storm, flapping) from the device workflows' histories (bench/temporal-actions.ts says what
 * counts): `actionsPerEvent` and `actionsPerBounce`.
 * Targets (issue): >= 2,000 events/s with p99 < 50 ms; a 10,000-device storm converges with zero
 * lost events and zero false alarms; a bounce costs at most 2 actions per device.
 */

const TOKEN = randomBytes(16).toString('hex');

interface Apps {
  worker: ServiceProcess;
  inbox: ServiceProcess & { url: string };
  naive: ServiceProcess & { url: string };
  /** An inbox adapter with its own database whose Temporal is unreachable: acceptance alone. */
  alone: ServiceProcess & { url: string };
}

export async function benchPresence(): Promise<Record<string, unknown>> {
  const devices = Number(process.env.BENCH_PRESENCE_DEVICES ?? 1_000);
  const naiveDevices = Number(process.env.BENCH_PRESENCE_NAIVE_DEVICES ?? Math.min(devices, 500));
  const concurrency = Number(process.env.BENCH_PRESENCE_CONCURRENCY ?? 32);
  const convergeTimeoutMs = Number(process.env.BENCH_PRESENCE_TIMEOUT_MS ?? 15 * 60_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-presence-'));
  const stack = await startBenchStack({ inProcessWorker: false });
  let apps: Apps | undefined;
  try {
    apps = await startApps(stack, dir);
    progress(`worker and adapters up; ${devices} devices, ${concurrency} senders`);

    // JIT and connection warm-up: subscribe events take the whole store path and signal nothing.
    await Promise.all([warmUp(apps.alone.url, concurrency), warmUp(apps.inbox.url, concurrency), warmUp(apps.naive.url, concurrency)]);
    const http = process.env.BENCH_PRESENCE_SKIP_HTTP === '1' ? null : await httpPhases(stack, apps, { devices, naiveDevices, concurrency, convergeTimeoutMs });

    const storm = process.env.BENCH_PRESENCE_SKIP_MQTT === '1' ? null : await mqttPhase(stack, apps.inbox.url, devices, convergeTimeoutMs);
    if (storm) progress(`mqtt storm: ${storm.storm.acceptedEventsPerSecond} events/s accepted, converged in ${storm.storm.convergedSeconds} s`);
    if (storm) progress(`actions per event: ${JSON.stringify(storm.actionsPerEvent)}, per bounce: ${storm.actionsPerBounce}`);

    const rss = { worker: memoryOf(apps.worker), adapter: memoryOf(apps.inbox) };
    return {
      benchmark: 'presence',
      devices,
      senders: concurrency,
      http,
      mqtt: storm,
      rssMb: rss,
      targets: {
        adapterAlone: http && {
          eventsPerSecond: http.adapterAlone.eventsPerSecond,
          p99Ms: http.adapterAlone.latencyMs.p99,
          met: http.adapterAlone.eventsPerSecond >= 2_000 && http.adapterAlone.latencyMs.p99 < 50,
        },
        wholeSystemOnThisMachine: http && {
          eventsPerSecond: http.inbox.eventsPerSecond,
          p99Ms: http.inbox.latencyMs.p99,
          met: http.inbox.eventsPerSecond >= 2_000 && http.inbox.latencyMs.p99 < 50,
        },
        storm: storm && {
          devices,
          lostEvents: storm.storm.lostEvents,
          falseAlarms: storm.storm.falseAlarms,
          met: storm.storm.lostEvents === 0 && storm.storm.falseAlarms === 0 && storm.storm.unconverged === 0,
        },
        actionsPerBounce: storm && { value: storm.actionsPerBounce, atMost: 2, met: storm.actionsPerBounce <= 2 },
      },
    };
  } finally {
    await Promise.allSettled([apps?.inbox.stop(), apps?.naive.stop(), apps?.alone.stop(), apps?.worker.stop()]);
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function httpPhases(stack: BenchStack, apps: Apps, o: { devices: number; naiveDevices: number; concurrency: number; convergeTimeoutMs: number }) {
  // Long enough to be steady (it creates no workflows, so it is cheap): at least 15,000 events.
  const alone = await acceptancePhase(apps.alone.url, Math.max(o.devices, 5_000), o.concurrency);
  progress(`http/adapter alone: ${alone.eventsPerSecond} events/s, p99 ${alone.latencyMs.p99} ms`);
  const inbox = await httpPhase(stack, apps.inbox.url, 'h-inbox', o.devices, o.concurrency, o.convergeTimeoutMs);
  progress(`http/inbox: ${inbox.eventsPerSecond} events/s, p99 ${inbox.latencyMs.p99} ms, converged in ${inbox.convergedSeconds} s`);
  const naive = await httpPhase(stack, apps.naive.url, 'h-naive', o.naiveDevices, o.concurrency, o.convergeTimeoutMs);
  progress(`http/naive: ${naive.eventsPerSecond} events/s, p99 ${naive.latencyMs.p99} ms`);
  return {
    adapterAlone: alone,
    inbox,
    naive,
    ratio: {
      eventsPerSecond: round(inbox.eventsPerSecond / naive.eventsPerSecond),
      p99: round(naive.latencyMs.p99 / Math.max(inbox.latencyMs.p99, 0.1)),
    },
  };
}

function progress(message: string): void {
  console.error(`[bench presence] ${message}`);
}

/** The settings of the bench's worker and adapter processes (bench/replicas.ts too). */
export function benchAppSettings(stack: BenchStack, dir: string, token: string): Record<string, string> {
  return {
    ...stack.env,
    // The bench's own settings only: not .stack-state/env of a running dev stack.
    DEVICE_OPS_ENV_FILE: path.join(dir, 'no-env-file'),
    ALARM_GRACE_PERIOD: '2m',
    ALARM_ESCALATION_STEPS: '15m',
    PRESENCE_RECONCILE_INTERVAL: '1h',
    STATS_SNAPSHOT_INTERVAL: '1h',
    LOG_LEVEL: 'WARN',
    // Bounded memory: an evicted device workflow replays its (short) history on its next signal.
    WORKER_MAX_CACHED_WORKFLOWS: process.env.WORKER_MAX_CACHED_WORKFLOWS ?? '1000',
    // A bounded heap for the worker (its workflow cache is sized for it): V8 otherwise grows lazily towards 4 GB.
    NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS ?? '--max-old-space-size=3072',
    WEBHOOK_HOST: '127.0.0.1',
    WEBHOOK_TOKEN: token,
  };
}

async function startApps(stack: BenchStack, dir: string): Promise<Apps> {
  const root = projectRoot();
  const env = { ...process.env, ...benchAppSettings(stack, dir, TOKEN) };
  const [inboxPort, naivePort, alonePort] = [await freePort(), await freePort(), await freePort()];
  const unreachableTemporal = `127.0.0.1:${await freePort()}`;
  const http = (name: string, entry: string, port: number, extra: Record<string, string> = {}) =>
    startHttpProcess({ name, entry, root, env: { ...env, WEBHOOK_PORT: String(port), ...extra }, logDir: dir, baseUrl: `http://127.0.0.1:${port}` });
  // One at a time: started together on a busy machine, an adapter can miss its 30 s readiness deadline.
  const worker = await startWorkerProcess({ root, env, logDir: dir });
  const inbox = await http('webhook', 'src/webhook/main.ts', inboxPort);
  const naive = await http('naive-webhook', 'bench/naive-adapter.ts', naivePort);
  const alone = await http('webhook-alone', 'src/webhook/main.ts', alonePort, { TEMPORAL_ADDRESS: unreachableTemporal, MONGODB_DB: 'bench_alone' });
  return {
    worker,
    inbox: { ...inbox, url: `http://127.0.0.1:${inboxPort}` },
    naive: { ...naive, url: `http://127.0.0.1:${naivePort}` },
    alone: { ...alone, url: `http://127.0.0.1:${alonePort}` },
  };
}

// ---- phase 1: EMQX bodies straight to the adapter ----

function connectedBody(clientid: string, connectedAt: number): string {
  return JSON.stringify({
    event: 'client.connected',
    clientid,
    username: clientid,
    connected_at: connectedAt,
    timestamp: connectedAt,
    peername: '127.0.0.1:40000',
    sockname: '127.0.0.1:1883',
    proto_name: 'MQTT',
    proto_ver: 4,
    keepalive: 60,
    clean_start: true,
    expiry_interval: 0,
    node: 'emqx@127.0.0.1',
    metadata: { rule_id: 'device_ops_events' },
  });
}

function disconnectedBody(clientid: string, connectedAt: number, disconnectedAt: number): string {
  return JSON.stringify({
    event: 'client.disconnected',
    clientid,
    username: clientid,
    reason: 'tcp_closed',
    connected_at: connectedAt,
    disconnected_at: disconnectedAt,
    timestamp: disconnectedAt,
    peername: '127.0.0.1:40000',
    sockname: '127.0.0.1:1883',
    proto_name: 'MQTT',
    proto_ver: 4,
    node: 'emqx@127.0.0.1',
    metadata: { rule_id: 'device_ops_events' },
  });
}

async function warmUp(url: string, concurrency: number): Promise<void> {
  const at = Date.now();
  const bodies = Array.from({ length: 3_000 }, (_, i) =>
    JSON.stringify({ event: 'session.subscribed', clientid: `warm-${i % 100}`, topic: `warm/${i}`, qos: 0, timestamp: at + i, peerhost: '127.0.0.1' }),
  );
  await postAll(url, bodies, concurrency);
}

/** A storm as EMQX sees it: everyone connected, everyone dropped, everyone back; one event per request. */
function stormBodies(ids: string[]): string[] {
  const base = Date.now();
  return [
    ...ids.map((id) => connectedBody(id, base)),
    ...ids.map((id) => disconnectedBody(id, base, base + 1_000)),
    ...ids.map((id) => connectedBody(id, base + 2_000)),
  ];
}

/**
 * How fast the adapter answers on its own: its Temporal is unreachable, so it stores the events
 * in its inbox and signals nothing (what it does while Temporal is down, and what it does first
 * during any storm). Same machine, same FerretDB, its own database.
 */
async function acceptancePhase(url: string, count: number, concurrency: number) {
  const bodies = stormBodies(Array.from({ length: count }, (_, i) => `a-${i}`));
  const { started: _started, ...posted } = await postAll(url, bodies, concurrency);
  return { devices: count, events: bodies.length, ...posted };
}

async function postAll(url: string, bodies: string[], concurrency: number) {
  const pool = new Pool(url, { connections: concurrency });
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const t0 = performance.now();
        const res = await pool.request({ method: 'POST', path: '/emqx/events', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body });
        await res.body.dump();
        latencies.push(performance.now() - t0);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  return {
    statuses,
    seconds: round(seconds),
    eventsPerSecond: round(bodies.length / seconds),
    latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), max: round(latencies.at(-1) ?? 0) },
    started,
  };
}

/** Device records, so the simulated clients are provisioned devices with device workflows (docs/presence.md). */
export async function recordDevices(stack: BenchStack, ids: readonly string[]): Promise<void> {
  const at = new Date().toISOString();
  for (let i = 0; i < ids.length; i += 5_000) {
    await stack.history.saveDevices(
      ids.slice(i, i + 5_000).map((clientId) => ({ clientId, username: clientId, acl: [], subscriptions: [], tags: [], status: 'active' as const, provisionedAt: at, updatedAt: at })),
    );
  }
}

async function httpPhase(stack: BenchStack, url: string, prefix: string, count: number, concurrency: number, timeoutMs: number) {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  await recordDevices(stack, ids);
  const bodies = stormBodies(ids);
  const { started, ...posted } = await postAll(url, bodies, concurrency);
  const converged = await waitConverged(stack.temporal, ids, (v) => v.presence === 'online' && v.counters.sessionsStarted === 2 && v.counters.sessionsEnded === 1, started, timeoutMs);
  const stored = await stack.history.db.collection('connection_events').countDocuments({ clientId: { $in: ids } });
  return {
    devices: count,
    events: bodies.length,
    ...posted,
    convergedSeconds: converged.seconds,
    unconverged: converged.unconverged,
    lostEvents: bodies.length - stored,
    falseAlarms: await stack.history.db.collection('alarms').countDocuments({ clientId: { $in: ids } }),
  };
}

/** Queries each device workflow until it shows the final state; devices already seen there are not asked again. */
export async function waitConverged(temporal: Client, ids: string[], done: (view: PresenceView) => boolean, since: number, timeoutMs: number): Promise<{ seconds: number; unconverged: number }> {
  let pending = ids;
  const deadline = Date.now() + timeoutMs;
  while (pending.length > 0 && Date.now() < deadline) {
    const still: string[] = [];
    await mapPooled(pending, 64, async (id) => {
      try {
        const view = await temporal.workflow.getHandle(presenceWorkflowId(id)).query(presenceQuery);
        if (!view || !done(view)) still.push(id);
      } catch {
        still.push(id);
      }
    });
    pending = still;
    if (pending.length > 0) await new Promise((r) => setTimeout(r, 250));
  }
  return { seconds: round((performance.now() - since) / 1000), unconverged: pending.length };
}

// ---- phase 2: real MQTT devices through the broker's rule engine ----

export interface Fleet {
  send(command: Record<string, unknown>): Promise<{ seconds: number; received?: Record<string, { messages: number; dup: number }> }>;
  stop(): void;
}

/** A process of simulated devices (bench/device-fleet.ts, or bench/job-agents.ts): one request at a time over IPC. */
export function startFleet(script: 'device-fleet.ts' | 'job-agents.ts' = 'device-fleet.ts'): Fleet {
  const child = fork(path.join(projectRoot(), 'bench', script), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return {
    send: (command) =>
      new Promise((resolve, reject) => {
        child.once('message', (reply: { ok: boolean; seconds: number; error?: string }) => (reply.ok ? resolve(reply) : reject(new Error(reply.error))));
        child.send(command);
      }),
    stop: () => child.kill(),
  };
}

async function mqttPhase(stack: BenchStack, adapterUrl: string, count: number, timeoutMs: number) {
  const ids = Array.from({ length: count }, (_, i) => `m-${i}`);
  await stack.emqx.ensureEventWebhook({ url: `${adapterUrl}/emqx/events`, token: TOKEN });
  await recordDevices(stack, ids);
  for (let i = 0; i < ids.length; i += 5_000) {
    await stack.emqx.importUsers('plain', ids.slice(i, i + 5_000).map((id) => ({ user_id: id, password: `${id}-pw` })));
  }
  const fleet = startFleet();
  try {
    return await stormThroughBroker(stack, fleet, adapterUrl, ids, timeoutMs);
  } finally {
    await fleet.send({ cmd: 'close' }).catch(() => undefined);
    fleet.stop();
  }
}

async function stormThroughBroker(stack: BenchStack, fleet: ReturnType<typeof startFleet>, adapterUrl: string, ids: string[], timeoutMs: number) {
  const count = ids.length;
  // Wall-clock bounds of each scenario, to split the workflows' histories (same machine, same clock).
  const connectWall = Date.now();
  const connectStart = performance.now();
  await fleet.send({ cmd: 'connect', url: stack.broker.mqttUrl, ids });
  const connectWave = await waitConverged(stack.temporal, ids, (v) => v.presence === 'online' && v.counters.sessionsStarted === 1, connectStart, timeoutMs);
  progress(`mqtt: ${count} devices connected and recorded online in ${connectWave.seconds} s`);

  const before = await scrape(adapterUrl);
  const stormWall = Date.now();
  const stormStart = performance.now();
  // Everyone drops and comes back at once (a network blip, a load balancer restart).
  const reconnectSeconds = (await fleet.send({ cmd: 'storm' })).seconds;
  const expectedEvents = count * 3;
  // The broker has handed every event to the adapter once the adapter has received them all.
  while ((await scrape(adapterUrl)).received < before.received + 2 * count && performance.now() - stormStart < timeoutMs) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const after = await scrape(adapterUrl);
  const acceptSeconds = (performance.now() - stormStart) / 1000;
  const converged = await waitConverged(stack.temporal, ids, (v) => v.presence === 'online' && v.counters.sessionsStarted === 2 && v.counters.sessionsEnded === 1, stormStart, timeoutMs);
  const stored = await stack.history.db.collection('connection_events').countDocuments({ clientId: { $in: ids } });
  const falseAlarms = await stack.history.db.collection('alarms').countDocuments({ clientId: { $in: ids } });
  const webhook = stack.broker.webhookMetrics()['http:device_ops'];
  progress(`mqtt: storm converged in ${converged.seconds} s`);

  const flapWall = Date.now();
  const flap = await flapping(stack, fleet, ids, timeoutMs);
  const workflowIds = ids.map(presenceWorkflowId);
  const firstConnect = scenario(await fleetActions(stack.temporal, workflowIds, { from: connectWall, to: stormWall }), count, count);
  const bounce = scenario(await fleetActions(stack.temporal, workflowIds, { from: stormWall, to: flapWall }), count, 2 * count);
  const flapActions = await settledActions(stack.temporal, flap.ids.map(presenceWorkflowId), flapWall);
  const flapped = scenario(flapActions, flap.ids.length, 2 * flap.cycles * flap.ids.length);
  return {
    actionsPerEvent: { firstConnect: firstConnect.perEvent, bounce: bounce.perEvent, flapping: flapped.perEvent },
    actionsPerBounce: bounce.perDevice,
    actions: { firstConnect, bounce, flapping: { ...flapped, cycles: flap.cycles, pauseMs: flap.pauseMs, convergedSeconds: flap.convergedSeconds, unconverged: flap.unconverged } },
    connectWave: { devices: count, convergedSeconds: connectWave.seconds, unconverged: connectWave.unconverged },
    storm: {
      events: 2 * count,
      reconnectSeconds: round(reconnectSeconds),
      acceptedEventsPerSecond: round((after.received - before.received) / acceptSeconds),
      adapterLatencyMs: histogramPercentiles(before.buckets, after.buckets),
      convergedSeconds: converged.seconds,
      unconverged: converged.unconverged,
      lostEvents: expectedEvents - stored,
      falseAlarms,
      brokerDelivery: webhook ? { success: webhook.success, failed: webhook.failed, dropped: webhook.dropped, retried: webhook.retried } : null,
    },
  };
}

/** Some devices flap: each drops and comes back `cycles` times. */
async function flapping(stack: BenchStack, fleet: ReturnType<typeof startFleet>, ids: string[], timeoutMs: number) {
  const devices = Math.min(ids.length, Number(process.env.BENCH_PRESENCE_FLAP_DEVICES ?? 100));
  const cycles = Number(process.env.BENCH_PRESENCE_FLAP_CYCLES ?? 6);
  const pauseMs = Number(process.env.BENCH_PRESENCE_FLAP_PAUSE_MS ?? 1_000);
  const flapIds = ids.slice(0, devices);
  const start = performance.now();
  await fleet.send({ cmd: 'flap', devices, cycles, pauseMs });
  // The storm left every device in its second session.
  const converged = await waitConverged(stack.temporal, flapIds, (v) => v.presence === 'online' && v.counters.sessionsStarted === 2 + cycles, start, timeoutMs);
  progress(`mqtt: ${devices} devices flapped ${cycles} times, converged in ${converged.seconds} s`);
  return { ids: flapIds, cycles, pauseMs, convergedSeconds: converged.seconds, unconverged: converged.unconverged };
}

/** Actions since `from`, read again until two readings a second apart agree (activities and alarms finish after the presence). */
async function settledActions(temporal: Client, workflowIds: string[], from: number): Promise<ActionCounts> {
  let last = await fleetActions(temporal, workflowIds, { from });
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 1_000));
    const now = await fleetActions(temporal, workflowIds, { from });
    if (totalActions(now) === totalActions(last)) return now;
    last = now;
  }
  return last;
}

function scenario(counts: ActionCounts, devices: number, events: number) {
  const total = totalActions(counts);
  const hundredths = (n: number): number => Math.round(n * 100) / 100;
  return { devices, events, actions: total, byKind: nonZero(counts), perEvent: hundredths(total / events), perDevice: hundredths(total / devices) };
}

interface Scrape {
  received: number;
  buckets: Map<string, number>;
}

export async function scrape(adapterUrl: string): Promise<Scrape> {
  const text = await (await request(`${adapterUrl}/metrics`)).body.text();
  let received = 0;
  const buckets = new Map<string, number>();
  for (const line of text.split('\n')) {
    const counter = /^device_ops_webhook_events_received_total\{[^}]*\} (\d+)/.exec(line);
    if (counter) received += Number(counter[1]);
    const bucket = /^device_ops_webhook_request_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/.exec(line);
    if (bucket) buckets.set(bucket[1] as string, Number(bucket[2]));
  }
  return { received, buckets };
}

/** p50/p99 from the adapter's own histogram: the upper bound of the bucket holding them. */
export function histogramPercentiles(before: Map<string, number>, after: Map<string, number>): { p50AtMost: number; p99AtMost: number } {
  const total = (after.get('+Inf') ?? 0) - (before.get('+Inf') ?? 0);
  const bound = (p: number): number => {
    for (const [le, n] of after) {
      if (le === '+Inf') continue;
      if (n - (before.get(le) ?? 0) >= total * p) return Number(le) * 1000;
    }
    return Number.POSITIVE_INFINITY;
  };
  return { p50AtMost: bound(0.5), p99AtMost: bound(0.99) };
}


