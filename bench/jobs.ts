import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHttpProcess, startWorkerProcess } from '../devstack/app-processes';
import { freePort, type ServiceProcess } from '../devstack/services';
import { projectRoot } from '../src/config';
import { DEFAULT_DEVICE_TOPICS, jobAclRules } from '../src/domain/device-topics';
import { runEmqxSetup } from '../src/starter/cli/emqx-cli';
import type { CampaignSummary } from '../src/contracts/campaign';
import { historyEvents } from './campaign';
import { cpuMeter, memoryOf, round } from './cpu';
import { benchAppSettings, startFleet, waitConverged, type Fleet } from './presence';
import { startBenchStack, type BenchStack } from './stack';
import { nonZero, totalActions } from './temporal-actions';

/**
 * bench/jobs: a job (a campaign with `expectReply`, docs/jobs.md) to N device agents that really
 * answer, against the same campaign without replies, on the whole local stack as users run it:
 * Temporal dev server, FerretDB, the dev broker, the worker and the webhook adapter as their own
 * processes, `device-ops emqx setup` (its code, runEmqxSetup) for access control and the event and
 * replies rules. The N devices (JOBS_BENCH_DEVICES, default 10,000) are provisioned through fleet
 * provisioning with the `--jobs` ACL rules and connect as examples/device-agent/agent.ts agents
 * spread over JOBS_BENCH_PROCESSES child processes (bench/job-agents.ts, default 4); their presence
 * workflows are created (the connect wave) and settled before the campaigns start.
 *
 * Then, in order: the fire-and-forget campaign (the same job message on each device's job topic; the
 * agents take it without answering), and the job, each agent answering SUCCEEDED (after an
 * IN_PROGRESS for each JOBS_BENCH_PROGRESS step).
 * For each: seconds from `campaigns.start` to the result (for the job: every target final),
 * targets/min, Temporal history events per 1,000 targets (the server's own histories, every run),
 * Temporal actions, worker RSS (peak during the run), CPU seconds per process, and what the
 * agents received (devices reached, QoS 1 repeats). Targets: the job's rate at least 0.5 of the
 * fire-and-forget rate; its history per 1,000 targets at most 2x fire-and-forget's.
 */

const TOKEN = randomBytes(16).toString('hex');

function progress(message: string): void {
  console.error(`[bench jobs] ${message}`);
}

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name}: "${raw}" must be a positive integer`);
  return value;
}

/**
 * JOBS_BENCH_PROGRESS: the IN_PROGRESS reports each agent sends before SUCCEEDED, as progress
 * steps (e.g. `50` or `25,75`); default none, the "agents answering SUCCEEDED".
 */
function progressSteps(): number[] {
  const raw = process.env.JOBS_BENCH_PROGRESS ?? '';
  const steps = raw.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (steps.some((n) => !Number.isInteger(n) || n < 0 || n > 100)) throw new Error(`JOBS_BENCH_PROGRESS: "${raw}" must be a comma-separated list of integers 0-100`);
  return steps;
}

/** JOBS_BENCH_REPLY_TIMEOUT_S (default 600, the CLI's default): a target without a final answer this long after delivery ends TIMED_OUT. */
function replyTimeoutMs(): number {
  return positiveInt('JOBS_BENCH_REPLY_TIMEOUT_S', 600) * 1000;
}

interface Apps {
  worker: ServiceProcess;
  adapter: ServiceProcess;
  adapterUrl: string;
  env: Record<string, string>;
}

async function startApps(stack: BenchStack, dir: string): Promise<Apps> {
  const root = projectRoot();
  const port = await freePort();
  const env: Record<string, string> = {
    ...benchAppSettings(stack, dir, TOKEN),
    // Two queues, as deployed (docs/task-queues.md): the connect wave's presence work does not queue ahead of the campaigns.
    TEMPORAL_PRESENCE_TASK_QUEUE: `${stack.env.TEMPORAL_TASK_QUEUE ?? 'bench'}-presence`,
    WEBHOOK_PORT: String(port),
  };
  const worker = await startWorkerProcess({ root, env: { ...process.env, ...env }, logDir: dir, nodeArgs: (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean) });
  const adapterUrl = `http://127.0.0.1:${port}`;
  const adapter = await startHttpProcess({ name: 'webhook', entry: 'src/webhook/main.ts', root, env: { ...process.env, ...env }, logDir: dir, baseUrl: adapterUrl });
  return { worker, adapter, adapterUrl, env };
}

/** Fleet provisioning (one workflow, chunks of devices) with the ACL rules `provision --jobs` gives. */
async function provision(stack: BenchStack, ids: string[]): Promise<number> {
  const t0 = performance.now();
  const { handle } = await stack.ops.startFleetProvisioning(
    ids.map((clientId) => ({ clientId, username: clientId, password: `${clientId}-pw`, acl: jobAclRules(clientId, DEFAULT_DEVICE_TOPICS), subscriptions: [], tags: [] })),
  );
  const result = await handle.result();
  if (result.failed > 0) throw new Error(`fleet provisioning failed for ${result.failed} of ${ids.length} devices`);
  return round((performance.now() - t0) / 1000);
}

interface JobCounts {
  devices: number;
  repeats: number;
  reports: number;
}

/** What every agent process saw of one job: devices it reached, QoS 1 repeats, reports the agents published. */
async function agentCounts(fleets: Fleet[], jobId: string): Promise<JobCounts> {
  const total = { devices: 0, repeats: 0, reports: 0 };
  for (const fleet of fleets) {
    const reply = (await fleet.send({ cmd: 'jobs' })) as { jobs?: Record<string, JobCounts> };
    const counts = reply.jobs?.[jobId];
    total.devices += counts?.devices ?? 0;
    total.repeats += counts?.repeats ?? 0;
    total.reports += counts?.reports ?? 0;
  }
  return total;
}

async function campaignRun(stack: BenchStack, apps: Apps, fleets: Fleet[], ids: string[], kind: 'fireAndForget' | 'job') {
  const jobId = `${kind === 'job' ? 'job' : 'ff'}-${ids.length}-${Date.now()}`;
  progress(`${kind}: campaign ${jobId} to ${ids.length} devices`);
  const meter = cpuMeter({ worker: apps.worker.child.pid, adapter: apps.adapter.child.pid, temporal: stack.pids.temporal, ferretdb: stack.pids.ferretdb, benchAndBroker: process.pid });
  let peakRss = 0;
  const sample = (): void => {
    peakRss = Math.max(peakRss, memoryOf(apps.worker)?.rssMb ?? 0);
  };
  const sampler = setInterval(sample, 200);
  const t0 = performance.now();
  const startedAt = Date.now();
  let summary: CampaignSummary;
  let started: { workflowId: string; runId: string };
  try {
    started = await stack.ops.campaigns.start({
      campaignId: jobId,
      targets: { list: ids.map((clientId) => ({ clientId })) },
      // The job topic (JOB_TOPIC's default); a job fills `${jobid}` itself, the plain campaign is given it.
      message: {
        topic: kind === 'job' ? DEFAULT_DEVICE_TOPICS.job : DEFAULT_DEVICE_TOPICS.job.replace('${jobid}', jobId),
        payload: { format: 'json', text: `{"job":"${jobId}","firmware":"2.1"}` },
        qos: 1,
      },
      ...(kind === 'job' ? { expectReply: { timeoutMs: replyTimeoutMs() } } : {}),
    });
    summary = await stack.ops.campaigns.handle(jobId).result();
  } finally {
    clearInterval(sampler);
    sample();
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = meter.stop();
  const history = await historyEvents(stack, started.workflowId, started.runId);
  // The broker's side of the replies: what its HTTP action sent to the adapter, retried, dropped (request_ttl expiry).
  const replyAction = stack.broker.webhookMetrics()['http:device_ops_replies'];
  const storedReplies = await stack.history.db.collection('device_replies').countDocuments({ jobId });
  // Where the job's time went: the last reply at the broker (EMQX receive time) and stored by the adapter.
  // (FerretDB has no $max accumulator: the newest by each field.)
  const newest = (field: 'at' | 'receivedAt') =>
    stack.history.db.collection<{ at: number; receivedAt: string }>('device_replies').findOne({ jobId }, { sort: { [field]: -1 }, projection: { at: 1, receivedAt: 1 } });
  const [lastAt, lastStored] = await Promise.all([newest('at'), newest('receivedAt')]);
  const timeline =
    lastAt && lastStored ? { lastReplyAtBrokerSeconds: round((lastAt.at - startedAt) / 1000), lastReplyStoredSeconds: round((Date.parse(lastStored.receivedAt) - startedAt) / 1000) } : null;
  const executions = await stack.history.db
    .collection('job_executions')
    .aggregate<{ _id: string; n: number }>([{ $match: { jobId } }, { $group: { _id: '$status', n: { $sum: 1 } } }])
    .toArray();
  return {
    targets: ids.length,
    state: summary.state,
    delivered: summary.counts.delivered,
    failed: summary.counts.failed,
    ...(kind === 'job'
      ? {
          replies: summary.replies,
          executions: Object.fromEntries(executions.map((e) => [e._id, e.n])),
          repliesStoredByAdapter: storedReplies,
          timeline,
          brokerRepliesAction: replyAction
            ? { matched: replyAction.matched, success: replyAction.success, failed: replyAction.failed, retried: replyAction.retried, dropped: replyAction.dropped, droppedExpired: replyAction['dropped.expired'], droppedQueueFull: replyAction['dropped.queue_full'] }
            : null,
        }
      : {}),
    agents: await agentCounts(fleets, jobId),
    seconds: round(seconds),
    targetsPerMinute: Math.round((ids.length / seconds) * 60),
    historyEvents: history.events,
    runs: history.runs,
    historyEventsPer1000Targets: round((history.events / ids.length) * 1000),
    actions: totalActions(history.actions),
    actionsByKind: nonZero(history.actions),
    workerPeakRssMbDuringRun: peakRss,
    cpuSeconds,
  };
}

export async function benchJobs(): Promise<Record<string, unknown>> {
  const devices = positiveInt('JOBS_BENCH_DEVICES', 10_000);
  const processes = Math.min(devices, positiveInt('JOBS_BENCH_PROCESSES', 4));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-bench-jobs-'));
  const stack = await startBenchStack({ inProcessWorker: false });
  const fleets: Fleet[] = [];
  let apps: Apps | undefined;
  try {
    apps = await startApps(stack, dir);
    // What `device-ops emqx setup` does: access control, the event rule and the replies rule.
    const setup = await runEmqxSetup({ webhook: true, disableFileSource: true, url: apps.adapterUrl, topic: [] }, apps.env);
    progress(`emqx setup: replies rule ${setup.webhook?.replies?.ruleId ?? 'missing'}`);

    const ids = Array.from({ length: devices }, (_, i) => `agent-${i}`);
    const provisionSeconds = await provision(stack, ids);
    progress(`${devices} devices provisioned with the job ACL rules in ${provisionSeconds} s`);

    const connectStart = performance.now();
    const perProcess = Math.ceil(devices / processes);
    const slices = Array.from({ length: processes }, (_, p) => ids.slice(p * perProcess, (p + 1) * perProcess)).filter((s) => s.length > 0);
    for (let p = 0; p < slices.length; p++) fleets.push(startFleet('job-agents.ts'));
    const progressReports = progressSteps();
    await Promise.all(slices.map((slice, p) => (fleets[p] as Fleet).send({ cmd: 'connect', url: stack.broker.mqttUrl, ids: slice, silentPrefix: 'ff-', progress: progressReports })));
    const connectSeconds = round((performance.now() - connectStart) / 1000);
    progress(`${devices} agents connected and subscribed in ${connectSeconds} s over ${slices.length} processes`);
    // The connect wave: every device's presence workflow created and online before the campaigns.
    const wave = await waitConverged(stack.temporal, ids, (v) => v.presence === 'online', connectStart, 30 * 60_000);
    progress(`connect wave settled in ${wave.seconds} s (${wave.unconverged} not online)`);

    const fireAndForget = await campaignRun(stack, apps, fleets, ids, 'fireAndForget');
    progress(`fire-and-forget: ${fireAndForget.targetsPerMinute} targets/min`);
    const job = await campaignRun(stack, apps, fleets, ids, 'job');
    progress(`job: ${job.targetsPerMinute} targets/min`);

    const rateRatio = Math.round((job.targetsPerMinute / fireAndForget.targetsPerMinute) * 100) / 100;
    const historyRatio = Math.round((job.historyEventsPer1000Targets / fireAndForget.historyEventsPer1000Targets) * 100) / 100;
    return {
      devices,
      agentProcesses: slices.length,
      reportsPerAgent: [...progressReports.map((p) => `IN_PROGRESS ${p}`), 'SUCCEEDED'],
      cpus: os.cpus().length,
      loadAverage: os.loadavg().map(round),
      provisionSeconds,
      connect: { seconds: connectSeconds, presenceSettledSeconds: wave.seconds, notOnline: wave.unconverged },
      fireAndForget,
      job,
      ratios: { jobRateOfFireAndForget: rateRatio, jobHistoryPer1000OfFireAndForget: historyRatio },
      targets: { rateAtLeastHalf: rateRatio >= 0.5, historyAtMostTwice: historyRatio <= 2 },
    };
  } finally {
    for (const fleet of fleets) {
      await fleet.send({ cmd: 'close' }).catch(() => undefined);
      fleet.stop();
    }
    await apps?.adapter.stop();
    await apps?.worker.stop();
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
