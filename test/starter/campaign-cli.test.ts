import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvField, etaText, progressBar } from '../../src/starter/cli/campaign-cli';
import type { CampaignProgress } from '../../src/contracts/campaign';
import { runCliWith, type CliRun } from '../support/cli-runner';
import { waitFor } from '../harness';
import { ids, registerDevices, TestDevices } from '../support/campaign-devices';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;
let devices: TestDevices;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  devices = new TestDevices(env.broker);
});

afterAll(async () => {
  await devices?.disconnectAll();
  await env?.close();
});

async function cli(args: string[], stdin = ''): Promise<CliRun> {
  return runCliWith(env.ops, args, stdin);
}

describe('device-ops campaign', () => {
  it('rejects bad input with a one-line reason before connecting to anything', async () => {
    const cases: [string[], string, RegExp][] = [
      [['--targets', '-', '--topic', 'a/+/cmd', '--payload', 'x'], 'd1\n', /wildcards/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--qos', '3'], 'd1\n', /--qos: "3" must be a whole number from 0 to 2/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--rate', 'fast'], 'd1\n', /--rate: "fast" must be a rate/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x'], 'good\nbad/id\n', /line 2: clientId must not contain/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', '{"a":', '--payload-format', 'json'], 'd1\n', /--payload: is not valid JSON/],
      [['--targets', '-', '--topic', 'a/${clientid}/${fw}', '--payload', 'x'], 'd1\n', /target d1: no value for \$\{fw\}: add a fw column to the targets CSV/],
      // The same missing value for many targets is reported once, with the count.
      [['--targets', '-', '--topic', 'a/${clientid}/${fw}', '--payload', 'x'], 'd1\nd2\nd3\nd4\n', /^error: 4 targets \(d1, d2, d3, \.\.\.\): no value for \$\{fw\}: add a fw column to the targets CSV\n$/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', '{"n":${n}}', '--payload-format', 'json'], 'clientId,n\nd1,7\nd2,seven\n', /target d2: the payload is not valid JSON/],
      [['--targets', '-', '--topic', 'a/${clientid}/${fw}', '--payload', 'x'], 'clientId,fw\nd1,a+b\n', /wildcards/],
      [['--topic', 'a/${clientid}', '--payload', 'x'], '', /give a targets file/],
      [['--targets', '-', '--payload', 'x'], 'd1\n', /--topic: is required \(or give --expect-reply to use JOB_TOPIC\)/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--reply-timeout', '5m'], 'd1\n', /--reply-timeout: needs --expect-reply/],
      [['--targets', '-', '--payload', 'x', '--expect-reply', '--reply-timeout', 'soon'], 'd1\n', /--reply-timeout: "soon" must be a duration/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--retry-failed', '2'], 'd1\n', /--retry-failed: needs --expect-reply/],
      [['--targets', '-', '--payload', 'x', '--expect-reply', '--retry-failed', '11'], 'd1\n', /--retry-failed: "11" must be a whole number from 0 to 10/],
      [['--targets', '-', '--payload', 'x', '--expect-reply', '--retry-timed-out', '1/soon'], 'd1\n', /--retry-timed-out: "soon" must be a duration/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--abort-threshold', '150'], 'd1\n', /--abort-threshold/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--deadline', 'soon'], 'd1\n', /--deadline: "soon" must be a duration/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--on-unknown-outcome', 'twice'], 'd1\n', /--on-unknown-outcome: "twice" must be give-up or retry/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x'], '\n# nothing\n', /no targets/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--start-at', 'tomorrow'], 'd1\n', /--start-at: "tomorrow" must be an ISO 8601 time with a time zone/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--start-at', '2026-12-08T01:00:00'], 'd1\n', /--start-at: .* must be an ISO 8601 time with a time zone/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--window', '0 1 * * * 24h'], 'd1\n', /--window: window "0 1 \* \* \* 24h": duration "24h" must be 1 to 1430 minutes/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--window', '0 25 * * * 1h'], 'd1\n', /--window: window "0 25 \* \* \* 1h": hour "25" must be within 0-23/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--window', '0 1 * * * 1h', '--window', 'nightly'], 'd1\n', /--window: window "nightly": expected/],
      [['--targets', '-', '--topic', 'a/${clientid}', '--payload', 'x', '--window', '0 1 31 2 * 1h'], 'd1\n', /schedule\.windows: no window ever opens/],
    ];
    for (const [args, stdin, reason] of cases) {
      const run = await cli(['campaign', 'start', ...args], stdin);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.connected, args.join(' ')).toBe(false);
      expect(run.stderr, args.join(' ')).toMatch(reason);
      expect(run.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });

  it('starts from a CSV on stdin, reports status and results, and shows a live progress bar', async () => {
    const targets = ids('cli-c', 6);
    await registerDevices(env.emqx, targets);
    await devices.connectAll(targets.slice(0, 4));
    const csv = ['clientId,fw', ...targets.map((id, i) => `${id},2.${i}`), `${targets[0]},9.9`].join('\n');
    const started = await cli(['campaign', 'start', '--targets', '-', '--topic', 'campaign/${clientid}/cmd', '--payload', '{"fw":"${fw}"}', '--payload-format', 'json', '--qos', '1', '--json'], csv);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    const { campaignId, workflowId, total, duplicates } = JSON.parse(started.stdout) as { campaignId: string; workflowId: string; total: number; duplicates: number };
    expect(workflowId).toBe(`campaign/${campaignId}`);
    expect({ total, duplicates }).toEqual({ total: 6, duplicates: 1 });

    const watched = await cli(['campaign', 'watch', campaignId, '--interval', '200ms']);
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/\[#{30}\] 100% {2}6\/6 {2}delivered 4 {2}offline 2/);
    expect(watched.stdout).toMatch(/completed/);
    // Piped: plain lines, no carriage returns. On a terminal: each redraw clears the line first.
    expect(watched.stdout).not.toMatch(/\r/);
    const onTerminal = await runCliWith(env.ops, ['campaign', 'watch', campaignId, '--interval', '200ms'], '', { isTTY: true });
    expect(onTerminal.stdout).toMatch(/^\r\x1b\[2K\[#{30}\] 100%/);
    expect(onTerminal.stdout.replace(/\r\x1b\[2K/g, '')).not.toMatch(/\r/);

    const status = await cli(['campaign', 'status', campaignId, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ campaignId, state: 'completed', counts: { total: 6, delivered: 4, offline: 2, failed: 0, pending: 0 } });
    expect(devices.received('cli-c-2').map((a) => JSON.parse(a.payload))).toEqual([{ fw: '2.2' }]);

    const csvOut = await cli(['campaign', 'results', campaignId]);
    const lines = csvOut.stdout.trim().split('\n');
    expect(lines[0]).toBe('clientId,status,attempts,messageId,delivery,lastError,firstAttemptAt,finishedAt,nextAttemptAt,replyStatus,replyProgress,replyDetails,replyRetries');
    expect(lines).toHaveLength(7);
    expect(lines[5]).toMatch(/^cli-c-4,offline,1,,,no matching subscribers/);
    expect(lines[1]).toMatch(/^cli-c-0,delivered,1,[0-9A-F]+,connected,/);
    const jsonOut = await cli(['campaign', 'results', campaignId, '--format', 'json', '--status', 'delivered']);
    expect(JSON.parse(jsonOut.stdout).map((r: { clientId: string }) => r.clientId)).toEqual(targets.slice(0, 4));
  });

  it('--trust-broker-answer counts what EMQX accepted as delivered, without reading the devices\' sessions', async () => {
    const targets = ids('cli-trust', 2);
    // One subscriber stands in for both devices, which have no sessions of their own.
    await registerDevices(env.emqx, ['cli-trust-monitor']);
    await devices.connect('cli-trust-monitor', 'trust/+/cmd');
    const started = await cli(['campaign', 'start', '--targets', '-', '--topic', 'trust/${clientid}/cmd', '--payload', 'x', '--trust-broker-answer', '--json'], ['clientId', ...targets].join('\n'));
    expect(started.code).toBe(0);
    const { campaignId } = JSON.parse(started.stdout) as { campaignId: string };
    await env.ops.campaigns.handle(campaignId).result();
    const rows = (await cli(['campaign', 'results', campaignId])).stdout.trim().split('\n').slice(1);
    expect(rows.map((r) => r.split(',').slice(0, 2).concat(r.split(',')[4] as string))).toEqual(targets.map((id) => [id, 'delivered', '']));
  });

  it('pauses, resumes and cancels from the command line; a second cancel fails with one line', async () => {
    const started = await cli(
      ['campaign', 'start', '--targets', '-', '--topic', 'cli/${clientid}/cmd', '--payload', 'x', '--rate', '120/min', '--json'],
      ids('cli-p', 50).join('\n'),
    );
    const { campaignId } = JSON.parse(started.stdout) as { campaignId: string };
    const paused = await cli(['campaign', 'pause', campaignId, '--json']);
    expect(paused.code).toBe(0);
    expect(JSON.parse(paused.stdout).state).toBe('paused');
    const again = await cli(['campaign', 'pause', campaignId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: campaign .*: the campaign is already paused\n$/);
    expect(JSON.parse((await cli(['campaign', 'resume', campaignId, '--json'])).stdout).state).toBe('running');
    const cancelled = await cli(['campaign', 'cancel', campaignId, '--reason', 'rollout halted by operator', '--json']);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ state: 'cancelled', reason: 'rollout halted by operator' });
    const twice = await cli(['campaign', 'cancel', campaignId, '--reason', 'again']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toBe(`error: campaign ${campaignId} is not running\n`);
    const human = await cli(['campaign', 'status', campaignId]);
    expect(human.stdout).toMatch(/cancelled \(rollout halted by operator\)/);
  });

  it('a scheduled campaign waits for its start time and window, shown by status; pause, resume and cancel work meanwhile', async () => {
    const DAY = 86_400_000;
    const day = (Math.floor(Date.now() / DAY) + 2) * DAY;
    const startAt = new Date(day + 30 * 60_000).toISOString();
    const opensAt = new Date(day + 3_600_000).toISOString();
    const targets = ids('cli-s', 2);
    await registerDevices(env.emqx, targets);
    await devices.connectAll(targets);
    const started = await cli(
      ['campaign', 'start', '--targets', '-', '--topic', 'campaign/${clientid}/cmd', '--payload', 'later', '--start-at', startAt, '--window', '0 1 * * * 3h', '--json'],
      targets.join('\n'),
    );
    expect(started.stderr).toBe('');
    const { campaignId } = JSON.parse(started.stdout) as { campaignId: string };

    const status = JSON.parse((await cli(['campaign', 'status', campaignId, '--json'])).stdout) as CampaignProgress;
    expect(status).toMatchObject({ state: 'running', counts: { total: 2, pending: 2 }, waitingForWindow: { reason: 'start-at', opensAt } });
    expect((await cli(['campaign', 'status', campaignId])).stdout).toContain(`waiting for its start time: opens ${opensAt}`);
    expect((await env.ops.campaigns.handle(campaignId).describe()).memo?.waitingForWindow).toBe(opensAt);

    expect(JSON.parse((await cli(['campaign', 'pause', campaignId, '--json'])).stdout)).not.toHaveProperty('waitingForWindow');
    expect(JSON.parse((await cli(['campaign', 'resume', campaignId, '--json'])).stdout)).toMatchObject({ state: 'running', waitingForWindow: { opensAt } });
    const cancelled = JSON.parse((await cli(['campaign', 'cancel', campaignId, '--reason', 'not this week', '--json'])).stdout) as CampaignProgress;
    expect(cancelled).toMatchObject({ state: 'cancelled', counts: { cancelled: 2, delivered: 0 } });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload)).not.toContain('later');
  });

  it('targets device records by tag', async () => {
    const now = new Date().toISOString();
    const tagged = ids('cli-t', 3);
    await env.history.saveDevices([
      ...tagged.map((clientId) => ({ clientId, username: clientId, acl: [], subscriptions: [], tags: ['north'], status: 'active' as const, provisionedAt: now, updatedAt: now })),
      { clientId: 'cli-t-other', username: 'cli-t-other', acl: [], subscriptions: [], tags: ['south'], status: 'active' as const, provisionedAt: now, updatedAt: now },
    ]);
    await registerDevices(env.emqx, tagged);
    await devices.connectAll(tagged);
    const started = await cli(['campaign', 'start', '--select-tag', 'north', '--topic', 'campaign/${clientid}/cmd', '--payload', 'tagged', '--json']);
    expect(started.code).toBe(0);
    const { campaignId } = JSON.parse(started.stdout) as { campaignId: string };
    await waitFor(async () => (await env.ops.campaigns.status(campaignId)).state === 'completed', { what: 'selector campaign' });
    expect((await env.ops.campaigns.status(campaignId)).counts).toMatchObject({ total: 3, delivered: 3 });
    for (const id of tagged) expect(devices.received(id).map((a) => a.payload)).toContain('tagged');
  });

  it('neutralises cells a spreadsheet would run as formulas (OWASP CSV injection)', () => {
    // https://owasp.org/www-community/attacks/CSV_Injection: prefix with an apostrophe and quote.
    expect(csvField('=HYPERLINK("http://evil","x")')).toBe(`"'=HYPERLINK(""http://evil"",""x"")"`);
    for (const lead of ['+', '-', '@', '\t', '\r']) expect(csvField(`${lead}cmd|' /C calc'!A0`)).toBe(`"'${lead}cmd|' /C calc'!A0"`);
    expect(csvField('plain text')).toBe('plain text');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField(3)).toBe('3');
    expect(csvField(undefined)).toBe('');
  });

  it('results for an unknown campaign print the error only, and create no output file', async () => {
    const out = path.join(tmpdir(), `results-${process.pid}-${Date.now()}.csv`);
    for (const args of [['campaign', 'results', 'no-such-campaign'], ['campaign', 'results', 'no-such-campaign', '--output', out]]) {
      const run = await cli(args);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe('error: no campaign no-such-campaign\n');
    }
    expect(existsSync(out)).toBe(false);
  });

  it('gives an ETA that accounts for targets waiting for their devices', () => {
    const base: CampaignProgress = {
      campaignId: 'c1', state: 'running', counts: { total: 10, delivered: 5, offline: 0, failed: 0, timedOut: 0, cancelled: 0, pending: 5, waiting: 5 },
      retries: 0, transientErrors: 0, ratePerMinute: 30, rateLimitPerMinute: 30, etaSeconds: 0, batches: 1, startedAt: '2026-01-01T00:00:00.000Z', deadlineAt: '2026-01-01T01:00:00.000Z',
    };
    expect(etaText(base)).toBe('waiting for 5 devices until 2026-01-01T01:00:00.000Z');
    expect(progressBar(base)).not.toMatch(/ETA 0s/);
    expect(etaText({ ...base, counts: { ...base.counts, pending: 8, waiting: 3 }, etaSeconds: 10 })).toBe('ETA 10s, then waiting for 3 devices until 2026-01-01T01:00:00.000Z');
    expect(etaText({ ...base, counts: { ...base.counts, waiting: 0 }, etaSeconds: 10 })).toBe('ETA 10s');
    expect(etaText({ ...base, state: 'completed' })).toBe('');
    // Waiting for a maintenance window: no ETA, the bar says what it waits for.
    const waiting: CampaignProgress = { ...base, counts: { ...base.counts, waiting: 0 }, etaSeconds: 10, waitingForWindow: { reason: 'window', opensAt: '2026-01-02T01:00:00.000Z' } };
    expect(etaText(waiting)).toBe('');
    expect(progressBar(waiting)).toMatch(/running \(waiting for a maintenance window: opens 2026-01-02T01:00:00\.000Z\)$/);
  });
});
