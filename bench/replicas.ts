import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAppProcesses, type AppProcesses } from '../devstack/app-processes';
import { freePort } from '../devstack/services';
import { projectRoot } from '../src/config';
import { memoryOf, round } from './cpu';
import { benchAppSettings, recordDevices, startFleet, waitConverged } from './presence';
import { startBenchStack, type BenchStack } from './stack';

/**
 * bench/replicas: the reconnect storm of bench/presence through the broker's rule engine, run once
 * with 1 webhook adapter + 1 worker and once with 2 + 2 (the dev stack's round-robin proxy in front
 * of the adapters, devstack/app-processes.ts), each on a private stack of its own. BENCH_REPLICAS_DEVICES
 * real MQTT devices connect, then all drop and reconnect at once. Reported per layout: storm events
 * accepted per second (the HTTP action's successes), time until every device workflow shows the
 * final state, and lost events (stored events missing; must be 0).
 * On one shared machine the replicas share its cores, so 2 + 2 shows that scaling out works and
 * what it costs here, not the gain on separate machines (docs/capacity.md).
 */

const TOKEN = randomBytes(16).toString('hex');

export async function benchReplicas(): Promise<Record<string, unknown>> {
  const devices = Number(process.env.BENCH_REPLICAS_DEVICES ?? 2_000);
  const timeoutMs = Number(process.env.BENCH_REPLICAS_TIMEOUT_MS ?? 15 * 60_000);
  const layouts = [
    { adapters: 1, workers: 1 },
    { adapters: 2, workers: 2 },
  ];
  const results = [];
  for (const layout of layouts) {
    progress(`${layout.adapters} adapter(s) + ${layout.workers} worker(s), ${devices} devices`);
    const result = await stormWith(layout, devices, timeoutMs);
    progress(`  ${JSON.stringify(result)}`);
    results.push({ ...layout, ...result });
  }
  return {
    benchmark: 'replicas',
    devices,
    layouts: results,
    targets: { lostZero: results.every((r) => r.lostEvents === 0 && r.unconverged === 0) },
  };
}

function progress(message: string): void {
  console.error(`[bench replicas] ${message}`);
}

async function stormWith(layout: { adapters: number; workers: number }, count: number, timeoutMs: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-replicas-'));
  const stack = await startBenchStack({ inProcessWorker: false });
  let apps: AppProcesses | undefined;
  const fleet = startFleet();
  try {
    apps = await startApps(stack, dir, layout);
    const ids = Array.from({ length: count }, (_, i) => `r-${i}`);
    await recordDevices(stack, ids);
    for (let i = 0; i < ids.length; i += 5_000) {
      await stack.emqx.importUsers('plain', ids.slice(i, i + 5_000).map((id) => ({ user_id: id, password: `${id}-pw` })));
    }
    const connectStart = performance.now();
    await fleet.send({ cmd: 'connect', url: stack.broker.mqttUrl, ids });
    const wave = await waitConverged(stack.temporal, ids, (v) => v.presence === 'online' && v.counters.sessionsStarted === 1, connectStart, timeoutMs);

    const success = (): number => stack.broker.webhookMetrics()['http:device_ops']?.success ?? 0;
    const before = success();
    const stormStart = performance.now();
    await fleet.send({ cmd: 'storm' });
    // Every disconnect and reconnect answered 2xx by an adapter: stored, durable.
    while (success() < before + 2 * count && performance.now() - stormStart < timeoutMs) await new Promise((r) => setTimeout(r, 50));
    const acceptSeconds = (performance.now() - stormStart) / 1000;
    const accepted = success() - before;
    const converged = await waitConverged(
      stack.temporal,
      ids,
      (v) => v.presence === 'online' && v.counters.sessionsStarted === 2 && v.counters.sessionsEnded === 1,
      stormStart,
      timeoutMs,
    );
    const stored = await stack.history.db.collection('connection_events').countDocuments({});
    const metrics = stack.broker.webhookMetrics()['http:device_ops'];
    return {
      connectWaveSeconds: wave.seconds,
      stormEvents: 2 * count,
      acceptedEventsPerSecond: round(accepted / acceptSeconds),
      convergedSeconds: converged.seconds,
      unconverged: converged.unconverged + wave.unconverged,
      lostEvents: count * 3 - stored,
      brokerDelivery: metrics ? { success: metrics.success, failed: metrics.failed, dropped: metrics.dropped, retried: metrics.retried } : null,
      proxyConnections: apps.proxy?.connections() ?? null,
      rssMb: { workers: apps.workers.map(memoryOf), adapters: apps.adapters.map(memoryOf) },
    };
  } finally {
    await fleet.send({ cmd: 'close' }).catch(() => undefined);
    fleet.stop();
    await apps?.stop();
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startApps(stack: BenchStack, dir: string, layout: { adapters: number; workers: number }): Promise<AppProcesses> {
  const webhookPort = await freePort();
  return startAppProcesses({
    root: projectRoot(),
    logDir: dir,
    host: '127.0.0.1',
    webhookPort,
    emqxApiUrl: stack.broker.apiUrl,
    ...layout,
    settings: { ...benchAppSettings(stack, dir, TOKEN), WEBHOOK_PORT: String(webhookPort) },
    supervision: { log: progress, onGiveUp: (m) => progress(`gave up: ${m}`) },
  });
}
