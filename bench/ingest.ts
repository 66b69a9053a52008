import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { startHttpProcess, startWorkerProcess } from '../devstack/app-processes';
import { freePort } from '../devstack/services';
import { projectRoot } from '../src/config';
import { cpuMeter, memoryOf, round } from './cpu';
import { benchAppSettings, histogramPercentiles, recordDevices, scrape, startFleet } from './presence';
import { startBenchStack, type BenchStack } from './stack';

/**
 * bench/ingest: the webhook adapter's ingest path as users run it and as EMQX drives it. Everything runs
 * on this machine: Temporal, FerretDB, the worker and the adapter as their own processes, the dev broker,
 * and BENCH_INGEST_DEVICES simulated MQTT devices (their own process) that really connect. Their events go
 * broker -> rule -> HTTP action -> receiver, one event per request over the connector `device-ops emqx
 * setup` writes (src/emqx/event-webhook.ts: pool_size, enable_pipelining, inflight_window), as EMQX sends
 * them (devstack/broker/rule-engine/http-connection-pool.ts).
 *
 * Three receivers, one after the other, with the same number of devices and the same settings:
 * - bare: a Node HTTP server that only reads and answers (bench/bare-http-server.ts): what this machine,
 *   this broker and these devices allow at all;
 * - adapterAlone: a webhook adapter whose Temporal is unreachable (its own database): it stores each
 *   event before its 2xx and signals nothing, which is the ingest path on its own;
 * - adapter: the webhook adapter (src/webhook), each event stored in MongoDB before its 2xx, the relay
 *   and the worker creating and signalling the device workflows meanwhile.
 * Each receiver takes a connect wave (every device connects), a storm (every device drops and reconnects
 * at once) and a disconnect wave. Reported per wave: events answered 2xx per second, from the wave's
 * start to its last answer, and the answer time on the wire (request written to response headers, at the
 * broker). Target (issue 15, item 7): the adapter's storm at >= 2,000 events/s with p99 < 50 ms.
 */

const TOKEN = randomBytes(16).toString('hex');

interface Wave {
  events: number;
  seconds: number;
  eventsPerSecond: number;
  answerMs: { p50: number; p99: number; max: number };
  /** The receiver's own response-time histogram (webhook adapters only): upper bounds of the buckets holding p50 and p99. */
  adapterMeasuredMs?: { p50AtMost: number; p99AtMost: number };
  notAnswered2xx: { failed: number; dropped: number; retried: number };
  cpuSeconds?: Record<string, number>;
}

export async function benchIngest(): Promise<Record<string, unknown>> {
  const devices = Number(process.env.BENCH_INGEST_DEVICES ?? 3_000);
  const timeoutMs = Number(process.env.BENCH_INGEST_TIMEOUT_MS ?? 5 * 60_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-ingest-'));
  const stack = await startBenchStack({ inProcessWorker: false });
  let apps: Awaited<ReturnType<typeof startApps>> | undefined;
  try {
    apps = await startApps(stack, dir);
    progress(`worker, adapter and bare server up; ${devices} devices; load average ${os.loadavg().map(round).join(' ')}`);
    const pids = { adapter: apps.adapter.child.pid, adapterAlone: apps.alone.child.pid, bare: apps.bare.child.pid, worker: apps.worker.child.pid, ...stack.pids, brokerAndBench: process.pid };

    const bare = await receiverRun(stack, { name: 'ingest_bare', url: apps.bareUrl, prefix: 'ib', devices, record: false, adapter: false, timeoutMs, pids });
    progress(`bare: storm ${bare.storm.eventsPerSecond} events/s, p99 ${bare.storm.answerMs.p99} ms`);
    await stack.emqx.deleteRule('ingest_bare_events');
    const alone = await receiverRun(stack, { name: 'ingest_alone', url: apps.aloneUrl, prefix: 'il', devices, record: false, adapter: true, timeoutMs, pids });
    progress(`adapter alone: storm ${alone.storm.eventsPerSecond} events/s, p99 ${alone.storm.answerMs.p99} ms`);
    await stack.emqx.deleteRule('ingest_alone_events');
    const adapter = await receiverRun(stack, { name: 'device_ops', url: apps.adapterUrl, prefix: 'ia', devices, record: true, adapter: true, timeoutMs, pids });
    progress(`adapter: storm ${adapter.storm.eventsPerSecond} events/s, p99 ${adapter.storm.answerMs.p99} ms`);

    const ids = Array.from({ length: devices }, (_, i) => `ia-${i}`);
    const stored = await stack.history.db.collection('connection_events').countDocuments({ clientId: { $in: ids } });
    const connector = await stack.emqx.getConnector('http', 'device_ops');
    const action = await stack.emqx.getAction('http', 'device_ops');
    return {
      benchmark: 'ingest',
      devices,
      loadAverage: os.loadavg().map(round),
      settings: {
        pool_size: (connector as Record<string, unknown> | null)?.pool_size,
        enable_pipelining: (connector as Record<string, unknown> | null)?.enable_pipelining ?? '100 (EMQX default)',
        resource_opts: (action as Record<string, unknown> | null)?.resource_opts,
      },
      bare,
      adapterAlone: alone,
      adapter: { ...adapter, storedEvents: stored, expectedStored: 4 * devices, lost: 4 * devices - stored },
      ratioToBare: {
        adapter: { connect: round2(adapter.connect.eventsPerSecond / bare.connect.eventsPerSecond), storm: round2(adapter.storm.eventsPerSecond / bare.storm.eventsPerSecond) },
        adapterAlone: { connect: round2(alone.connect.eventsPerSecond / bare.connect.eventsPerSecond), storm: round2(alone.storm.eventsPerSecond / bare.storm.eventsPerSecond) },
      },
      rssMb: { adapter: memoryOf(apps.adapter), worker: memoryOf(apps.worker) },
      target: {
        eventsPerSecond: adapter.storm.eventsPerSecond,
        p99Ms: adapter.storm.answerMs.p99,
        met: adapter.storm.eventsPerSecond >= 2_000 && adapter.storm.answerMs.p99 < 50 && stored === 4 * devices,
      },
    };
  } finally {
    await Promise.allSettled([apps?.adapter.stop(), apps?.alone.stop(), apps?.bare.stop(), apps?.worker.stop()]);
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function progress(message: string): void {
  console.error(`[bench ingest] ${message}`);
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

async function startApps(stack: BenchStack, dir: string) {
  const root = projectRoot();
  // The presence bench's settings (bounded worker cache and heap, no reconciliation or snapshots).
  const env = { ...process.env, ...benchAppSettings(stack, dir, TOKEN) };
  const [adapterPort, alonePort, barePort] = [await freePort(), await freePort(), await freePort()];
  const adapterUrl = `http://127.0.0.1:${adapterPort}`;
  const aloneUrl = `http://127.0.0.1:${alonePort}`;
  const bareUrl = `http://127.0.0.1:${barePort}`;
  const unreachableTemporal = `127.0.0.1:${await freePort()}`;
  // BENCH_ADAPTER_NODE_OPTIONS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) profiles the adapter alone.
  const adapterEnv = { ...env, WEBHOOK_PORT: String(adapterPort), NODE_OPTIONS: process.env.BENCH_ADAPTER_NODE_OPTIONS ?? '' };
  const aloneEnv = { ...adapterEnv, WEBHOOK_PORT: String(alonePort), TEMPORAL_ADDRESS: unreachableTemporal, MONGODB_DB: 'bench_alone' };
  const [worker, adapter, alone, bare] = await Promise.all([
    startWorkerProcess({ root, env, logDir: dir }),
    startHttpProcess({ name: 'webhook', entry: 'src/webhook/main.ts', root, env: adapterEnv, logDir: dir, baseUrl: adapterUrl }),
    startHttpProcess({ name: 'webhook-alone', entry: 'src/webhook/main.ts', root, env: aloneEnv, logDir: dir, baseUrl: aloneUrl }),
    startHttpProcess({ name: 'bare-http', entry: 'bench/bare-http-server.ts', root, env: { ...env, WEBHOOK_PORT: String(barePort), NODE_OPTIONS: '' }, logDir: dir, baseUrl: bareUrl }),
  ]);
  return { worker, adapter, alone, bare, adapterUrl, aloneUrl, bareUrl };
}

/** One receiver: the event webhook pointed at it, then the connect wave, the storm and the disconnect wave. */
async function receiverRun(
  stack: BenchStack,
  o: { name: string; url: string; prefix: string; devices: number; record: boolean; adapter: boolean; timeoutMs: number; pids: Record<string, number | undefined> },
): Promise<{ connect: Wave; storm: Wave; disconnect: Wave }> {
  const ids = Array.from({ length: o.devices }, (_, i) => `${o.prefix}-${i}`);
  await stack.emqx.ensureEventWebhook({ url: `${o.url}/emqx/events`, token: TOKEN, name: o.name });
  if (o.record) await recordDevices(stack, ids);
  for (let i = 0; i < ids.length; i += 5_000) {
    await stack.emqx.importUsers('plain', ids.slice(i, i + 5_000).map((id) => ({ user_id: id, password: `${id}-pw` })));
  }
  const fleet = startFleet();
  try {
    const wave = (command: Record<string, unknown>, events: number) => measureWave(stack, { name: o.name, url: o.url, adapter: o.adapter }, events, o.timeoutMs, o.pids, () => fleet.send(command));
    const connect = await wave({ cmd: 'connect', url: stack.broker.mqttUrl, ids }, o.devices);
    const storm = await wave({ cmd: 'storm' }, 2 * o.devices);
    const disconnect = await wave({ cmd: 'close' }, o.devices);
    return { connect, storm, disconnect };
  } finally {
    fleet.stop();
  }
}

/** Runs one wave of device traffic and waits until the action has `events` answers. */
async function measureWave(
  stack: BenchStack,
  receiver: { name: string; url: string; adapter: boolean },
  events: number,
  timeoutMs: number,
  pids: Record<string, number | undefined>,
  run: () => Promise<unknown>,
): Promise<Wave> {
  const actionId = `http:${receiver.name}`;
  await resetActionMetrics(stack, actionId);
  const before = receiver.adapter ? await scrape(receiver.url) : undefined;
  const meter = cpuMeter(pids);
  const started = performance.now();
  const answered = (): number => {
    const m = stack.broker.webhookMetrics()[actionId];
    return m ? m.success + m.failed + m.dropped : 0;
  };
  await run();
  while (answered() < events && performance.now() - started < timeoutMs) await new Promise((r) => setTimeout(r, 10));
  const seconds = (performance.now() - started) / 1000;
  const cpuSeconds = meter.stop();
  const metrics = stack.broker.webhookMetrics()[actionId];
  const answers = stack.broker.webhookAnswerTimes()[actionId];
  const success = metrics?.success ?? 0;
  const after = receiver.adapter ? await scrape(receiver.url) : undefined;
  return {
    ...(before && after ? { adapterMeasuredMs: histogramPercentiles(before.buckets, after.buckets) } : {}),
    events,
    seconds: round(seconds),
    eventsPerSecond: Math.round(success / seconds),
    answerMs: { p50: answers?.p50Ms ?? 0, p99: answers?.p99Ms ?? 0, max: answers?.maxMs ?? 0 },
    notAnswered2xx: { failed: metrics?.failed ?? 0, dropped: metrics?.dropped ?? 0, retried: metrics?.retried ?? 0 },
    cpuSeconds,
  };
}

/** PUT /actions/{id}/metrics/reset, as on EMQX. */
async function resetActionMetrics(stack: BenchStack, actionId: string): Promise<void> {
  const auth = Buffer.from(`${stack.env.EMQX_API_KEY}:${stack.env.EMQX_API_SECRET}`).toString('base64');
  const response = await request(`${stack.broker.apiUrl}/actions/${encodeURIComponent(actionId)}/metrics/reset`, { method: 'PUT', headers: { authorization: `Basic ${auth}` } });
  await response.body.dump();
  if (response.statusCode >= 300) throw new Error(`resetting ${actionId} metrics: HTTP ${response.statusCode}`);
}
