import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import mqtt from 'mqtt';
import { startWorkerProcess } from '../devstack/app-processes';
import type { ServiceProcess } from '../devstack/services';
import { projectRoot } from '../src/config';
import type { PublishMessage } from '../src/emqx';
import { cpuMeter, memoryOf, round } from './cpu';
import { startBenchStack, type BenchStack } from './stack';
import { addActions, countActions, noActions, nonZero, totalActions, type ActionCounts } from './temporal-actions';

/**
 * bench/campaign: publish campaigns on a private stack (Temporal dev server, FerretDB, the
 * EMQX-compatible broker), with the worker as its own process (src/worker.ts, as in production)
 * and one MQTT subscriber on `bench/+/cmd`, so every message is really dispatched.
 *
 * For each size in BENCH_CAMPAIGN_SIZES (default 10000,100000): a campaign with no rate limit,
 * timed from `campaigns.start` (targets stored in MongoDB, workflow started) to its result; then,
 * in the same run, the same messages sent straight to /publish/bulk in the same batches (the
 * ceiling on this machine), and BENCH_CAMPAIGN_NAIVE single /publish calls one after another.
 * Reports targets/min, worker RSS, Temporal history events per 1,000 targets (all runs) and the
 * Temporal Cloud actions the campaign workflow cost, per target (`actionsPerTarget`).
 * Targets (issue): >= 60,000 targets/min, >= half the direct bulk rate, >= 20x the naive loop.
 *
 * The broker runs in the benchmark's process, so a REST call costs no network round trip and the
 * naive loop is unrealistically fast. Every scenario in BENCH_CAMPAIGN_REST_LATENCY_MS (default
 * `0,2`) runs all of the above with every REST call (campaign, direct bulk, naive loop alike)
 * waiting that many milliseconds first, as over a network to EMQX; ratios compare runs of the same
 * scenario. Each size below 50,000 runs 3 times (campaign, then direct bulk) and reports the median
 * of each (BENCH_CAMPAIGN_REPEAT sets the count for every size). Other knobs: BENCH_CAMPAIGN_BATCH (500),
 * BENCH_CAMPAIGN_CONCURRENCY (4), BENCH_CAMPAIGN_NAIVE (3000 calls), BENCH_WORKER_NODE_ARGS (extra node
 * options for the worker, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */

function progress(message: string): void {
  console.error(`[bench campaign] ${message}`);
}



function startWorker(stack: BenchStack, dir: string): Promise<ServiceProcess> {
  return startWorkerProcess({
    root: projectRoot(),
    env: {
      ...process.env,
      ...stack.env,
      // The bench's own settings only: not .stack-state/env of a running dev stack.
      DEVICE_OPS_ENV_FILE: path.join(dir, 'no-env-file'),
      STATS_SNAPSHOT_INTERVAL: '1h',
      PRESENCE_RECONCILE_INTERVAL: '1h',
      LOG_LEVEL: 'WARN',
    },
    logDir: dir,
    // BENCH_WORKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the worker.
    nodeArgs: (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean),
  });
}

function eventMs(event: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }): number {
  return Number(event.eventTime?.seconds ?? 0) * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
}

/**
 * Events over every run of the campaign, following the continue-as-new chain from the first run,
 * and the publishing phase: from the first publishing activity scheduled to the last completed.
 */
export async function historyEvents(stack: BenchStack, workflowId: string, firstRunId: string): Promise<{ events: number; runs: number; publishingSeconds: number; actions: ActionCounts }> {
  let runId: string | undefined = firstRunId;
  let events = 0;
  const actions = noActions();
  let runs = 0;
  let firstScheduled = Infinity;
  let lastCompleted = 0;
  while (runId) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await stack.temporal.workflow.getHandle(workflowId, runId).fetchHistory();
    const list = history.events ?? [];
    events += list.length;
    runs += 1;
    addActions(actions, countActions(list));
    for (const event of list) {
      if (event.activityTaskScheduledEventAttributes?.activityType?.name === 'publishCampaignBatch') firstScheduled = Math.min(firstScheduled, eventMs(event));
      if (event.activityTaskCompletedEventAttributes) lastCompleted = Math.max(lastCompleted, eventMs(event));
    }
    runId = list.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return { events, runs, publishingSeconds: Number.isFinite(firstScheduled) ? round((lastCompleted - firstScheduled) / 1000) : 0, actions };
}

/** The processes whose CPU time is reported; `benchAndBroker` is this process alone (the broker and the MQTT subscriber run in it). */
function processesOf(stack: BenchStack, worker: ServiceProcess): Record<string, number | undefined> {
  return { worker: worker.child.pid, temporal: stack.pids.temporal, ferretdb: stack.pids.ferretdb, benchAndBroker: process.pid };
}

function benchTopic(prefix: string, i: number): string {
  return `bench/${prefix}-${i}/cmd`;
}

async function campaignRun(stack: BenchStack, worker: ServiceProcess, size: number, batchSize: number, concurrency: number): Promise<Record<string, unknown>> {
  const prefix = `t${size}`;
  const targets = Array.from({ length: size }, (_, i) => ({ clientId: `${prefix}-${i}` }));
  const t0 = performance.now();
  const started = await stack.ops.campaigns.start({
    campaignId: `bench-${size}-${Date.now()}`,
    targets: { list: targets },
    message: { topic: 'bench/${clientid}/cmd', payload: { format: 'json', text: '{"cmd":"update","device":"${clientid}"}' }, qos: 1 },
    rollout: { batchSize, concurrency },
    // One wildcard subscriber stands in for the devices: trust EMQX's answer (docs/campaign-delivery.md).
    offline: { confirmAtDevice: false },
  });
  const setupSeconds = (performance.now() - t0) / 1000;
  const handle = stack.ops.campaigns.handle(started.campaignId);
  let peakRss = 0;
  const sample = (): void => {
    peakRss = Math.max(peakRss, memoryOf(worker)?.rssMb ?? 0);
  };
  const meter = cpuMeter(processesOf(stack, worker));
  // Every 100 ms, and once more at the end: a 10,000-target campaign is over in well under a second.
  const sampler = setInterval(sample, 100);
  const summary = await handle.result().finally(() => {
    clearInterval(sampler);
    sample();
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = meter.stop();
  const history = await historyEvents(stack, started.workflowId, started.runId);
  return {
    targets: size,
    delivered: summary.counts.delivered,
    seconds: round(seconds),
    setupSeconds: round(setupSeconds),
    targetsPerMinute: Math.round((size / seconds) * 60),
    batches: summary.batches,
    // From the first publishing activity to the last: the campaign without its start and finish.
    publishingSeconds: history.publishingSeconds,
    historyEvents: history.events,
    runs: history.runs,
    historyEventsPer1000Targets: round((history.events / size) * 1000),
    // Temporal Cloud actions billed for the campaign workflow (bench/temporal-actions.ts); target <= 0.05 per target.
    actions: totalActions(history.actions),
    actionsByKind: nonZero(history.actions),
    actionsPerTarget: Math.round((totalActions(history.actions) / size) * 10_000) / 10_000,
    workerRssMb: memoryOf(worker)?.rssMb ?? null,
    workerPeakRssMbDuringRun: peakRss,
    cpuSeconds,
  };
}

async function directBulk(stack: BenchStack, worker: ServiceProcess, size: number, batchSize: number): Promise<{ messages: number; seconds: number; messagesPerMinute: number; cpuSeconds: Record<string, number> }> {
  const meter = cpuMeter(processesOf(stack, worker));
  const t0 = performance.now();
  for (let from = 0; from < size; from += batchSize) {
    const batch: PublishMessage[] = [];
    for (let i = from; i < Math.min(size, from + batchSize); i++) {
      batch.push({ topic: benchTopic('direct', i), payload: `{"cmd":"update","device":"direct-${i}"}`, qos: 1 });
    }
    await stack.emqx.publishBulk(batch);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { messages: size, seconds: round(seconds), messagesPerMinute: Math.round((size / seconds) * 60), cpuSeconds: meter.stop() };
}

async function naiveLoop(stack: BenchStack, count: number): Promise<{ messages: number; seconds: number; messagesPerMinute: number }> {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    await stack.emqx.publish({ topic: benchTopic('naive', i), payload: `{"cmd":"update","device":"naive-${i}"}`, qos: 1 });
  }
  const seconds = (performance.now() - t0) / 1000;
  return { messages: count, seconds: round(seconds), messagesPerMinute: Math.round((count / seconds) * 60) };
}

/** The middle element by `key` (the upper one of an even count). */
function median<T>(list: readonly T[], key: (item: T) => number): T {
  return [...list].sort((a, b) => key(a) - key(b))[Math.floor(list.length / 2)] as T;
}

/** How often each size runs (campaign, then direct bulk): a run under a second is at the mercy of a noisy machine. */
function repeatsFor(size: number): number {
  const given = Number(process.env.BENCH_CAMPAIGN_REPEAT);
  if (Number.isInteger(given) && given > 0) return given;
  return size < 50_000 ? 3 : 1;
}

/** One latency setting: each size as a campaign and as direct bulk calls, then the naive loop; ratios within the scenario. */
async function scenario(stack: BenchStack, worker: ServiceProcess, options: { restLatencyMs: number; sizes: number[]; batchSize: number; concurrency: number; naiveCount: number }) {
  const { restLatencyMs, batchSize, concurrency, naiveCount } = options;
  if (restLatencyMs > 0) stack.broker.faults.set({ restLatencyMs });
  else stack.broker.faults.reset();
  const runs = [];
  for (const size of options.sizes) {
    const samples = [];
    for (let k = 1, repeats = repeatsFor(size); k <= repeats; k++) {
      progress(`REST latency ${restLatencyMs} ms: campaign of ${size} targets (${k} of ${repeats})`);
      const campaign = await campaignRun(stack, worker, size, batchSize, concurrency);
      progress(`  ${String(campaign.targetsPerMinute)} targets/min; direct /publish/bulk with the same batches`);
      samples.push({ campaign, direct: await directBulk(stack, worker, size, batchSize) });
    }
    // Medians of the campaign and of the direct calls, each over its own runs.
    const campaign = median(samples.map((s) => s.campaign), (c) => c.targetsPerMinute as number);
    const direct = median(samples.map((s) => s.direct), (d) => d.messagesPerMinute);
    const campaignRate = campaign.targetsPerMinute as number;
    runs.push({
      campaign,
      directBulk: direct,
      campaignShareOfDirectBulk: Math.round((campaignRate / direct.messagesPerMinute) * 100) / 100,
      samples: samples.map((s) => ({ campaignTargetsPerMinute: s.campaign.targetsPerMinute, directBulkPerMinute: s.direct.messagesPerMinute })),
    });
  }
  progress(`REST latency ${restLatencyMs} ms: naive loop of ${naiveCount} single /publish calls`);
  const naive = await naiveLoop(stack, naiveCount);
  return {
    restLatencyMs,
    runs: runs.map((r) => {
      const rate = r.campaign.targetsPerMinute as number;
      return {
        ...r,
        timesNaive: round(rate / naive.messagesPerMinute),
        targets: {
          atLeast60000PerMinute: rate >= 60_000,
          atLeastHalfOfDirectBulk: r.campaignShareOfDirectBulk >= 0.5,
          atLeast20TimesNaive: rate >= 20 * naive.messagesPerMinute,
        },
      };
    }),
    naiveSinglePublish: naive,
    // What any client can reach at most against the naive loop here: 20x needs this to be above 20.
    directBulkTimesNaive: round(Math.max(...runs.map((r) => r.directBulk.messagesPerMinute)) / naive.messagesPerMinute),
  };
}

export async function benchCampaign(): Promise<Record<string, unknown>> {
  const sizes = (process.env.BENCH_CAMPAIGN_SIZES ?? '10000,100000').split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
  const batchSize = Number(process.env.BENCH_CAMPAIGN_BATCH ?? 500);
  const concurrency = Number(process.env.BENCH_CAMPAIGN_CONCURRENCY ?? 4);
  const naiveCount = Number(process.env.BENCH_CAMPAIGN_NAIVE ?? 3_000);
  const latencies = (process.env.BENCH_CAMPAIGN_REST_LATENCY_MS ?? '0,2').split(',').map((s) => Number(s.trim())).filter((n) => n >= 0);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-campaign-'));
  const stack = await startBenchStack({ inProcessWorker: false });
  let worker: ServiceProcess | undefined;
  let subscriber: mqtt.MqttClient | undefined;
  try {
    worker = await startWorker(stack, dir);
    await stack.emqx.importUsers('plain', [{ user_id: 'bench-subscriber', password: 'bench-subscriber-password' }]);
    subscriber = await mqtt.connectAsync(stack.broker.mqttUrl, { clientId: 'bench-subscriber', username: 'bench-subscriber', password: 'bench-subscriber-password', reconnectPeriod: 0 });
    let received = 0;
    subscriber.on('message', () => (received += 1));
    await subscriber.subscribeAsync('bench/+/cmd', { qos: 0 });

    // Warm-up: the worker's first workflow tasks and the JIT are not what we measure (a worker in
    // production runs for days); a few chunks' worth gets the hot paths compiled.
    const warm = await stack.ops.campaigns.start({ targets: { list: Array.from({ length: 5_000 }, (_, i) => ({ clientId: `warm-${i}` })) }, message: { topic: 'bench/${clientid}/cmd', payload: { format: 'text', text: 'w' } }, offline: { confirmAtDevice: false } });
    await stack.ops.campaigns.handle(warm.campaignId).result();

    const scenarios = [];
    for (const restLatencyMs of latencies) scenarios.push(await scenario(stack, worker, { restLatencyMs, sizes, batchSize, concurrency, naiveCount }));
    return {
      benchmark: 'campaign',
      batchSize,
      concurrency,
      cpus: os.cpus().length,
      loadAverage: os.loadavg().map(round),
      scenarios,
      messagesReceivedBySubscriber: received,
    };
  } finally {
    await subscriber?.endAsync().catch(() => undefined);
    await worker?.stop();
    await stack.close();
  }
}
