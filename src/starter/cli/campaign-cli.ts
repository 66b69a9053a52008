import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import type { Command } from 'commander';
import { FailureType, type CampaignRequestInput, type PayloadTemplate, type TargetCounts } from '../../domain/schemas/campaign';
import { InputError } from '../../domain/input-error';
import { MaintenanceWindowError, parseMaintenanceWindow } from '../../domain/maintenance-window';
import { loadConfig } from '../../config';
import type { CampaignResultRow } from '../../store/campaigns';
import type { CampaignProgress } from '../../contracts/campaign';
import { collect, durationFlag, printResult, withOps, type CliIo } from './cli-io';
import type { DeviceOps } from '../client/index';
import { parseTargetsFile } from './campaign-file';

/**
 * `device-ops campaign ...`: start, status, watch, pause, resume, close, cancel, results. Like every
 * command: input checked before anything connects (exit 2), one-line errors, non-zero exit on
 * failure, `--json` for scripts.
 */

function fail(flag: string, reason: string): never {
  throw new InputError([`${flag}: ${reason}`]);
}

function duration(text: string | undefined, flag: string): number | undefined {
  return text === undefined ? undefined : durationFlag(text, flag);
}

function whole(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) fail(flag, `"${text}" must be a whole number from ${min} to ${max}`);
  return n;
}

/** `600`, `600/min`, `10/s`: targets per minute. */
export function parseRate(text: string, flag = '--rate'): number {
  const match = /^\s*(\d+)\s*(?:\/\s*(min|m|s|sec))?\s*$/.exec(text);
  if (!match) fail(flag, `"${text}" must be a rate such as 600/min or 10/s`);
  const perMinute = Number(match[1]) * (match[2] === 's' || match[2] === 'sec' ? 60 : 1);
  if (perMinute < 1) fail(flag, 'must be at least 1/min');
  return perMinute;
}

/** `--ramp BASE/min,FACTOR,N`: start at BASE, multiply by FACTOR after every N delivered targets. */
function parseRamp(text: string): { baseRatePerMinute: number; incrementFactor: number; numberOfSucceededTargets: number } {
  const [base, factor, after] = text.split(',').map((s) => s.trim());
  if (base === undefined || factor === undefined || after === undefined) fail('--ramp', 'expected BASE/min,FACTOR,AFTER_SUCCESSES, e.g. 100/min,2,500');
  const incrementFactor = Number(factor);
  if (!Number.isFinite(incrementFactor)) fail('--ramp', `factor "${factor}" must be a number from 1.1 to 5`);
  return { baseRatePerMinute: parseRate(base, '--ramp'), incrementFactor, numberOfSucceededTargets: whole(after, '--ramp', 1, 100_000_000) as number };
}

/**
 * `--retry-failed` / `--retry-timed-out N[/BACKOFF]`: N retries (0-10, AWS IoT Jobs' limit) of a
 * job execution that ended that way, the first after BACKOFF (default 0), doubling up to 5 minutes.
 */
function parseJobRetry(text: string, flag: string, expectReply: boolean | undefined): { retries: number; backoffMs: number } {
  if (!expectReply) fail(flag, 'needs --expect-reply');
  const [count = '', backoff] = text.split('/');
  return { retries: whole(count, flag, 0, 10) as number, backoffMs: backoff === undefined ? 0 : (duration(backoff, flag) as number) };
}

/** `--start-at`: an ISO 8601 time with a zone (Z or +hh:mm), as the request schema takes it. */
function parseStartAt(text: string): string {
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;
  if (!iso.test(text.trim()) || Number.isNaN(Date.parse(text))) fail('--start-at', `"${text}" must be an ISO 8601 time with a time zone, e.g. 2026-12-08T01:00:00Z`);
  return new Date(Date.parse(text)).toISOString();
}

/** `--window "<cron> <duration>"`: checked here so that the error names the flag. */
function parseWindows(specs: string[]): string[] {
  for (const spec of specs) {
    try {
      parseMaintenanceWindow(spec);
    } catch (err) {
      if (err instanceof MaintenanceWindowError) fail('--window', err.message);
      throw err;
    }
  }
  return specs;
}

function readPayload(text: string, format: string, flag = '--payload'): PayloadTemplate {
  if (!['text', 'json', 'base64'].includes(format)) fail(`${flag}-format`, `"${format}" must be text, json or base64`);
  let bytes: Buffer | undefined;
  if (text.startsWith('@')) {
    try {
      bytes = readFileSync(text.slice(1));
    } catch (err) {
      fail(flag, `cannot read ${text.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  if (format === 'base64') return { format: 'base64', data: bytes ? bytes.toString('base64') : text };
  const content = bytes ? bytes.toString('utf8') : text;
  if (format === 'json') {
    // With placeholders, each target's rendering is parsed before the start (and named if it fails).
    if (!content.includes('${')) {
      try {
        JSON.parse(content);
      } catch {
        fail(flag, 'is not valid JSON');
      }
    }
    return { format: 'json', text: content };
  }
  return { format: 'text', text: content };
}

function userProperties(pairs: string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) fail('--user-property', `"${pair}" must be KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

interface StartOptions {
  targets?: string;
  selectPrefix?: string;
  selectTag?: string;
  topic?: string;
  expectReply?: boolean;
  replyTimeout?: string;
  continuous?: boolean;
  rescanInterval?: string;
  retryFailed?: string;
  retryTimedOut?: string;
  rollbackTopic?: string;
  rollbackPayload?: string;
  rollbackPayloadFormat: string;
  payload: string;
  payloadFormat: string;
  qos: string;
  retain?: boolean;
  expiry?: string;
  userProperty: string[];
  rate?: string;
  ramp?: string;
  batchSize?: string;
  concurrency?: string;
  retries?: string;
  offlineRetries?: string;
  retryBackoff?: string;
  onUnknownOutcome?: string;
  abortThreshold?: string;
  abortMinExecuted?: string;
  abortOn: string;
  deadline?: string;
  inProgressTimeout?: string;
  startAt?: string;
  window: string[];
  waitOffline?: boolean;
  recheck?: string;
  trustBrokerAnswer?: boolean;
  transport: string;
  id?: string;
  json?: boolean;
}

async function campaignRequest(io: CliIo, o: StartOptions): Promise<CampaignRequestInput> {
  const sources = [o.targets !== undefined, o.selectPrefix !== undefined || o.selectTag !== undefined].filter(Boolean).length;
  if (sources !== 1) fail('--targets', 'give a targets file (or - for standard input), or --select-prefix / --select-tag');
  let targets: CampaignRequestInput['targets'];
  if (o.targets !== undefined) {
    let text: string;
    if (o.targets === '-') text = await io.readStdin();
    else {
      try {
        text = readFileSync(o.targets, 'utf8');
      } catch (err) {
        return fail('--targets', `cannot read ${o.targets}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    }
    targets = { list: parseTargetsFile(text) };
  } else {
    targets = { selector: { ...(o.selectPrefix ? { prefix: o.selectPrefix } : {}), ...(o.selectTag ? { tag: o.selectTag } : {}) } };
  }
  const qos = whole(o.qos, '--qos', 0, 2) as number;
  const expiry = whole(o.expiry, '--expiry', 0, 4_294_967_295);
  const props = userProperties(o.userProperty);
  const maximumPerMinute = o.rate === undefined ? undefined : parseRate(o.rate);
  const backoffMs = duration(o.retryBackoff, '--retry-backoff') ?? 2_000;
  const abortOn = FailureType.safeParse(o.abortOn);
  if (!abortOn.success) fail('--abort-on', `"${o.abortOn}" must be failed, offline, timed_out, rejected or all`);
  const threshold = o.abortThreshold === undefined ? undefined : Number(o.abortThreshold);
  if (threshold !== undefined && !(threshold > 0 && threshold <= 100)) fail('--abort-threshold', `"${o.abortThreshold}" must be a percentage above 0, at most 100`);
  if (o.onUnknownOutcome !== undefined && !['give-up', 'retry'].includes(o.onUnknownOutcome)) {
    fail('--on-unknown-outcome', `"${o.onUnknownOutcome}" must be give-up or retry`);
  }
  if (!['rest', 'mqtt'].includes(o.transport)) fail('--transport', `"${o.transport}" must be rest or mqtt`);
  const deadlineMs = duration(o.deadline, '--deadline');
  const inProgressTimeoutMs = duration(o.inProgressTimeout, '--in-progress-timeout');
  const recheckIntervalMs = duration(o.recheck, '--recheck');
  const startAt = o.startAt === undefined ? undefined : parseStartAt(o.startAt);
  const windows = parseWindows(o.window);
  if (o.replyTimeout !== undefined && !o.expectReply) fail('--reply-timeout', 'needs --expect-reply');
  const replyTimeoutMs = duration(o.replyTimeout, '--reply-timeout');
  if (o.continuous && o.targets !== undefined) fail('--continuous', 'needs --select-prefix or --select-tag: a list of targets cannot grow');
  if (o.rescanInterval !== undefined && !o.continuous) fail('--rescan-interval', 'needs --continuous');
  const rescanIntervalMs = duration(o.rescanInterval, '--rescan-interval');
  const jobRetry = {
    ...(o.retryFailed !== undefined ? { failed: parseJobRetry(o.retryFailed, '--retry-failed', o.expectReply) } : {}),
    ...(o.retryTimedOut !== undefined ? { timedOut: parseJobRetry(o.retryTimedOut, '--retry-timed-out', o.expectReply) } : {}),
  };
  const expectReply = { ...(replyTimeoutMs !== undefined ? { timeoutMs: replyTimeoutMs } : {}), ...(Object.keys(jobRetry).length ? { retry: jobRetry } : {}) };
  if (o.rollbackTopic !== undefined && o.rollbackPayload === undefined) fail('--rollback-topic', 'needs --rollback-payload');
  if (o.rollbackPayload !== undefined && !o.expectReply) fail('--rollback-payload', 'needs --expect-reply (the rollback goes to the targets that reported SUCCEEDED or IN_PROGRESS)');
  // A job goes to the job topic (JOB_TOPIC, docs/jobs.md) unless --topic says otherwise.
  const topic = o.topic ?? (o.expectReply ? loadConfig(['jobs']).jobs.job : fail('--topic', 'is required (or give --expect-reply to use JOB_TOPIC)'));
  return {
    ...(o.id ? { campaignId: o.id } : {}),
    targets,
    message: {
      topic,
      payload: readPayload(o.payload, o.payloadFormat),
      qos: qos as 0 | 1 | 2,
      retain: Boolean(o.retain),
      ...(expiry !== undefined || props ? { properties: { ...(expiry !== undefined ? { messageExpiryInterval: expiry } : {}), ...(props ? { userProperties: props } : {}) } } : {}),
    },
    transport: o.transport as 'rest' | 'mqtt',
    rollout: {
      ...(maximumPerMinute !== undefined ? { maximumPerMinute } : {}),
      ...(o.ramp ? { exponentialRate: parseRamp(o.ramp) } : {}),
      ...(o.batchSize !== undefined ? { batchSize: whole(o.batchSize, '--batch-size', 1, 1_000) } : {}),
      ...(o.concurrency !== undefined ? { concurrency: whole(o.concurrency, '--concurrency', 1, 16) } : {}),
    },
    retry: {
      transient: { retries: whole(o.retries, '--retries', 0, 100) ?? 3, backoffMs },
      noSubscriber: { retries: whole(o.offlineRetries, '--offline-retries', 0, 100) ?? 0, backoffMs },
      ...(o.onUnknownOutcome !== undefined ? { unknownOutcome: o.onUnknownOutcome as 'give-up' | 'retry' } : {}),
    },
    offline: {
      wait: Boolean(o.waitOffline),
      ...(recheckIntervalMs !== undefined ? { recheckIntervalMs } : {}),
      ...(o.trustBrokerAnswer ? { confirmAtDevice: false } : {}),
    },
    abort:
      threshold === undefined
        ? []
        : [{ failureType: abortOn.data, minExecuted: whole(o.abortMinExecuted, '--abort-min-executed', 1, 100_000_000) ?? 10, thresholdPercent: threshold }],
    ...(deadlineMs !== undefined ? { deadlineMs } : {}),
    ...(inProgressTimeoutMs !== undefined ? { inProgressTimeoutMs } : {}),
    ...(startAt !== undefined || windows.length ? { schedule: { ...(startAt !== undefined ? { startAt } : {}), ...(windows.length ? { windows } : {}) } } : {}),
    ...(o.expectReply ? { expectReply } : {}),
    ...(o.continuous ? { continuous: rescanIntervalMs !== undefined ? { rescanIntervalMs } : true } : {}),
    ...(o.rollbackPayload !== undefined
      ? { rollback: { message: { topic: o.rollbackTopic ?? topic, payload: readPayload(o.rollbackPayload, o.rollbackPayloadFormat, '--rollback-payload'), qos: qos as 0 | 1 | 2 } } }
      : {}),
  };
}

function countsLine(c: TargetCounts): string {
  return `total ${c.total}  delivered ${c.delivered}  offline ${c.offline}  failed ${c.failed}  timed out ${c.timedOut}  cancelled ${c.cancelled}  pending ${c.pending} (waiting ${c.waiting})`;
}

/**
 * When a running campaign should be done. The workflow's ETA covers only targets it can publish to
 * now; targets waiting for their device to reconnect end at the latest at the deadline. None while it
 * waits for its start time or a maintenance window (scheduleText says which).
 */
export function etaText(p: CampaignProgress): string {
  if (p.state !== 'running' || p.waitingForWindow) return '';
  const publishable = p.etaSeconds !== null && p.counts.pending > p.counts.waiting ? `ETA ${p.etaSeconds}s` : '';
  const waiting = p.counts.waiting > 0 ? `waiting for ${p.counts.waiting} device${p.counts.waiting === 1 ? '' : 's'}${p.deadlineAt ? ` until ${p.deadlineAt}` : ''}` : '';
  return [publishable, waiting].filter(Boolean).join(', then ');
}

/** The schedule's part of the status: what the campaign waits for, or when its window closes. */
export function scheduleText(p: CampaignProgress): string {
  if (p.waitingForWindow) {
    const what = p.waitingForWindow.reason === 'start-at' ? 'its start time' : 'a maintenance window';
    return `waiting for ${what}: ${p.waitingForWindow.opensAt ? `opens ${p.waitingForWindow.opensAt}` : 'no window opens'}`;
  }
  return p.windowClosesAt ? `maintenance window open until ${p.windowClosesAt}` : '';
}

function describeProgress(p: CampaignProgress): string {
  const eta = etaText(p);
  return [
    `campaign ${p.campaignId}: ${p.state}${p.reason ? ` (${p.reason})` : ''}${p.continuous ? `  continuous: ${p.continuous}` : ''}`,
    `  ${countsLine(p.counts)}`,
    ...(scheduleText(p) ? [`  ${scheduleText(p)}`] : []),
    ...(p.rollback ? [`  rollback: campaign ${p.rollback}`] : []),
    ...(p.rollbackOf ? [`  rollback of: campaign ${p.rollbackOf}`] : []),
    ...(p.replies ? [`  devices report: succeeded ${p.replies.succeeded}  failed ${p.replies.failed}  rejected ${p.replies.rejected}  timed out ${p.replies.timedOut}  in progress ${p.replies.inProgress}  queued ${p.replies.queued}${p.replies.canceled ? `  canceled ${p.replies.canceled}` : ''}${p.replies.retries !== undefined ? `  retries ${p.replies.retries}` : ''}`] : []),
    `  rate ${p.ratePerMinute}/min${p.rateLimitPerMinute ? ` (limit ${p.rateLimitPerMinute}/min)` : ''}  retries ${p.retries}${eta ? `  ${eta}` : ''}${p.deadlineAt ? `  deadline ${p.deadlineAt}` : ''}`,
  ].join('\n');
}

/** One line: a bar of the finished share, the counts, the rate and the ETA. */
export function progressBar(p: CampaignProgress, width = 30): string {
  const done = p.counts.total === 0 ? 1 : (p.counts.total - p.counts.pending) / p.counts.total;
  const filled = Math.round(done * width);
  const eta = etaText(p) ? `  ${etaText(p)}` : '';
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(done * 100)}%  ${p.counts.total - p.counts.pending}/${p.counts.total}  delivered ${p.counts.delivered}  offline ${p.counts.offline}  failed ${p.counts.failed + p.counts.timedOut}  pending ${p.counts.pending}  ${p.ratePerMinute}/min${eta}  ${p.state}${p.waitingForWindow ? ` (${scheduleText(p)})` : ''}${p.continuous ? `  continuous: ${p.continuous}` : ''}`;
}

const FINISHED = new Set(['completed', 'cancelled', 'aborted']);
const CSV_COLUMNS: (keyof CampaignResultRow)[] = ['clientId', 'status', 'attempts', 'messageId', 'delivery', 'lastError', 'firstAttemptAt', 'finishedAt', 'nextAttemptAt', 'replyStatus', 'replyProgress', 'replyDetails', 'replyRetries'];

/**
 * One CSV cell. Text that a spreadsheet would run as a formula (starting with =, +, -, @, tab or CR)
 * gets a leading apostrophe and quotes, as OWASP recommends
 * (https://owasp.org/www-community/attacks/CSV_Injection): error texts and client ids come from
 * outside, and the file is opened by an operator.
 */
export function csvField(value: string | number | undefined): string {
  if (typeof value === 'number') return String(value);
  const text = value ?? '';
  if (/^[=+\-@\t\r]/.test(text)) return `"'${text.replace(/"/g, '""')}"`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function registerCampaignCommands(program: Command, io: CliIo): void {
  const print = (json: boolean | undefined, value: unknown, human: () => string): void => printResult(io, json, value, human);
  const withCampaigns = <T>(work: (ops: DeviceOps['campaigns']) => Promise<T>): Promise<T> => withOps(io, (ops) => work(ops.campaigns));

  const campaign = program.command('campaign').description('publish to many devices with a rollout rate, retries, abort criteria, pause/resume/cancel');

  campaign
    .command('start')
    .description('start a campaign')
    .option('--targets <file>', 'client ids, one per line, or CSV "clientId,var1,..." with template values; - for standard input')
    .option('--select-prefix <prefix>', 'target the active devices whose client id starts with this')
    .option('--select-tag <tag>', 'target the active devices with this tag')
    .option('--topic <template>', 'topic, with ${clientid}, ${jobid} and ${var} placeholders (default with --expect-reply: JOB_TOPIC)')
    .option('--expect-reply', 'targets report the job (docs/jobs.md): the campaign ends when every delivered target answered or timed out')
    .option('--reply-timeout <duration>', 'with --expect-reply: a target without a final answer this long after delivery ends TIMED_OUT, default 10m')
    .option('--continuous', 'with --select-prefix / --select-tag: also reach devices provisioned or tagged later, until `campaign close`')
    .option('--rescan-interval <duration>', 'with --continuous: how often device records are read again for devices the campaign was not told of, default 5m')
    .option('--retry-failed <n[/backoff]>', 'with --expect-reply: publish a job the device reported FAILED again, up to n times (0-10), the first after backoff (default 0), doubling')
    .option('--retry-timed-out <n[/backoff]>', 'with --expect-reply: the same for a job execution that TIMED_OUT')
    .option('--rollback-payload <text|@file>', 'with --expect-reply: if the campaign ends aborted, campaign <id>-rollback sends this to the targets that reported SUCCEEDED or IN_PROGRESS')
    .option('--rollback-topic <template>', 'the rollback message topic (${clientid}, ${jobid} = <id>-rollback; default: the campaign topic)')
    .option('--rollback-payload-format <format>', 'text, json or base64', 'text')
    .requiredOption('--payload <text|@file>', 'payload text, or @file')
    .option('--payload-format <format>', 'text, json or base64', 'text')
    .option('--qos <n>', 'QoS 0, 1 or 2', '1')
    .option('--retain', 'publish retained')
    .option('--expiry <seconds>', 'MQTT 5 message expiry interval')
    .option('--user-property <key=value>', 'MQTT 5 user property (repeatable)', collect, [])
    .option('--rate <n/min>', 'at most this many targets per minute (e.g. 600/min, 10/s)')
    .option('--ramp <base/min,factor,n>', 'exponential ramp: start rate, factor, raise after n delivered (with --expect-reply: n reported SUCCEEDED)')
    .option('--batch-size <n>', 'targets per bulk request (1-1000, default 500)')
    .option('--concurrency <n>', 'batches in flight, on different chunks (1-16, default 4); without --rate a batch sends up to 5 bulk requests')
    .option('--retries <n>', 'retries after transient errors (503, timeouts), default 3')
    .option('--offline-retries <n>', 'retries when nobody is subscribed, default 0')
    .option('--retry-backoff <duration>', 'first retry delay, doubling, default 2s')
    .option('--on-unknown-outcome <rule>', 'a bulk request sent but unanswered (EMQX may have published): give-up (default, no duplicates) or retry (at-least-once)')
    .option('--abort-threshold <pct>', 'abort when this share of executed targets did not succeed')
    .option('--abort-min-executed <n>', 'targets executed before the abort threshold applies, default 10')
    .option('--abort-on <type>', 'which outcomes count for the threshold: failed, offline, timed_out, all; with --expect-reply also rejected, and failed/timed_out/all count device reports', 'all')
    .option('--deadline <duration>', 'end the campaign after this long (default 24h with --wait-offline)')
    .option('--in-progress-timeout <duration>', 'a target still failing this long after its first try ends timed_out')
    .option('--start-at <time>', 'publish nothing before this ISO 8601 time (e.g. 2026-12-08T01:00:00Z); the deadline counts from it')
    .option('--window <cron duration>', 'maintenance window "<min> <hour> <day> <month> <weekday> <duration>" in UTC, e.g. "0 1 * * * 3h" (1m-1430m; repeatable): publish only while one is open', collect, [])
    .option('--wait-offline', 'keep offline targets pending until they reconnect or the deadline passes')
    .option('--recheck <duration>', 'how often waiting targets are tried without a reconnect signal, default 1m')
    .option('--trust-broker-answer', "count every message EMQX accepted as delivered, without reading the target device's session (docs/campaign-delivery.md)")
    .option('--transport <rest|mqtt>', 'publish through the REST API or the worker\'s MQTT client', 'rest')
    .option('--id <campaignId>', 'campaign id (default generated)')
    .option('--json', 'print JSON')
    .action(async (opts: StartOptions) => {
      const request = await campaignRequest(io, opts);
      // Everything, every target's rendered message included, is checked before connecting.
      const { validateCampaignRequest } = await import('../client/campaigns.js');
      const validated = validateCampaignRequest(request, loadConfig(['jobs']).jobs);
      const started = await withCampaigns((ops) => ops.startValidated(validated));
      const duplicates = started.duplicates ?? 0;
      print(opts.json, { campaignId: started.campaignId, workflowId: started.workflowId, ...(started.total !== undefined ? { total: started.total } : {}), duplicates }, () =>
        `started campaign ${started.campaignId} (${started.workflowId})${started.total !== undefined ? `, ${started.total} targets` : ''}${duplicates ? `, ${duplicates} duplicate ids ignored` : ''}`,
      );
    });

  campaign
    .command('status')
    .argument('<campaignId>')
    .option('--json', 'print JSON')
    .action(async (campaignId: string, opts: { json?: boolean }) => {
      const progress = await withCampaigns((ops) => ops.status(campaignId));
      print(opts.json, progress, () => describeProgress(progress));
    });

  campaign
    .command('watch')
    .argument('<campaignId>')
    .option('--interval <duration>', 'refresh interval', '1s')
    .description('a live progress bar until the campaign ends')
    .action(async (campaignId: string, opts: { interval: string }) => {
      const interval = duration(opts.interval, '--interval') as number;
      await withCampaigns(async (ops) => {
        let last = '';
        for (;;) {
          const progress = await ops.status(campaignId);
          const line = progressBar(progress);
          // A terminal gets one line redrawn in place (\x1b[2K clears what a longer line left);
          // a pipe or file gets a plain line whenever the progress changes.
          if (io.isTTY) io.stdout(`\r\x1b[2K${line}`);
          else if (line !== last) io.stdout(`${line}\n`);
          last = line;
          if (FINISHED.has(progress.state)) {
            io.stdout(`${io.isTTY ? '\n' : ''}${describeProgress(progress)}\n`);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, interval));
        }
      });
    });

  const controls = {
    pause: '',
    resume: '',
    close: 'a continuous campaign takes no more devices; it completes once its targets are final',
  } as const;
  for (const [action, description] of Object.entries(controls) as [keyof typeof controls, string][]) {
    const command = campaign.command(action).argument('<campaignId>');
    if (description) command.description(description);
    command.option('--json', 'print JSON').action(async (campaignId: string, opts: { json?: boolean }) => {
      const progress = await withCampaigns((ops) => ops[action](campaignId));
      print(opts.json, progress, () => describeProgress(progress));
    });
  }

  campaign
    .command('cancel')
    .argument('<campaignId>')
    .requiredOption('--reason <text>', 'why (recorded on every cancelled target)')
    .option('--json', 'print JSON')
    .action(async (campaignId: string, opts: { reason: string; json?: boolean }) => {
      if (!opts.reason.trim()) fail('--reason', 'must not be empty');
      const progress = await withCampaigns((ops) => ops.cancel(campaignId, opts.reason));
      print(opts.json, progress, () => describeProgress(progress));
    });

  campaign
    .command('results')
    .argument('<campaignId>')
    .option('--format <csv|json>', 'output format', 'csv')
    .option('--status <status>', 'only targets with this status')
    .option('--output <file>', 'write to a file instead of standard output')
    .description('per-target outcomes: status, attempts, message id, last error')
    .action(async (campaignId: string, opts: { format: string; status?: string; output?: string }) => {
      if (opts.format !== 'csv' && opts.format !== 'json') fail('--format', `"${opts.format}" must be csv or json`);
      const statuses = ['pending', 'retrying', 'waiting', 'delivered', 'offline', 'failed', 'timed_out', 'cancelled'];
      if (opts.status !== undefined && !statuses.includes(opts.status)) fail('--status', `"${opts.status}" must be one of ${statuses.join(', ')}`);
      let file: WriteStream | undefined;
      const write = (text: string): void => {
        if (file) file.write(text);
        else io.stdout(text);
      };
      let rows = 0;
      await withCampaigns(async (ops) => {
        const results = ops.results(campaignId);
        // The first row is read before anything is written, so an unknown campaign prints only its error.
        const first = await results.next();
        if (opts.output) file = createWriteStream(opts.output);
        write(opts.format === 'csv' ? `${CSV_COLUMNS.join(',')}\n` : '[');
        const all = async function* (): AsyncGenerator<CampaignResultRow> {
          if (first.done) return;
          yield first.value;
          yield* results;
        };
        for await (const row of all()) {
          if (opts.status !== undefined && row.status !== opts.status) continue;
          write(opts.format === 'csv' ? `${CSV_COLUMNS.map((c) => csvField(row[c])).join(',')}\n` : `${rows === 0 ? '\n' : ',\n'}${JSON.stringify(row)}`);
          rows += 1;
        }
        if (opts.format === 'json') write(rows === 0 ? ']\n' : '\n]\n');
      });
      const written = file;
      if (written) {
        await new Promise<void>((resolve, reject) => written.end((err?: Error | null) => (err ? reject(err) : resolve())));
        io.stderr(`wrote ${rows} targets to ${opts.output}\n`);
      }
    });
}
