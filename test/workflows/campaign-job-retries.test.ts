import { describe, expect, it } from 'vitest';
import type { DeviceAgent, DeviceAgentOptions } from '../../examples/device-agent/agent';
import type { CampaignResultRow } from '../../src/store/campaigns';
import { JobExecutionStore } from '../../src/store/job-executions';
import { DeviceReplyStore } from '../../src/store/job-replies';
import { waitFor } from '../harness';
import { runCliWith } from '../support/cli-runner';
import { passwordOf, QUIET_ALARMS, useJobTestEnv } from '../support/job-env';
import { postEvents, WEBHOOK_TOKEN } from '../support/presence-env';

/**
 * Job retries per failure type (AWS IoT Jobs' `jobExecutionsRetryConfig`, docs/jobs.md), end to end
 * on the real stack: the dev broker, devices running the example agent over MQTT 3.1.1, the
 * broker's rule engine posting their statuses to the webhook adapter's /emqx/replies (EMQX's
 * `message.publish` event, https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1), and the campaign workflow scheduling and publishing the retries from its
 * poll activity.
 */

const jobEnv = useJobTestEnv();

/** Messages each device received, by client id. */
const received = new Map<string, { topic: string; payload: string }[]>();

async function devices(specs: Record<string, DeviceAgentOptions['jobs']>): Promise<Record<string, DeviceAgent>> {
  const out: Record<string, DeviceAgent> = {};
  for (const [clientId, jobs] of Object.entries(specs)) {
    await jobEnv.env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, alarmPolicy: QUIET_ALARMS });
    received.set(clientId, []);
    const onMessage = (topic: string, payload: string): void => void received.get(clientId)?.push({ topic, payload });
    const agent = await jobEnv.startAgent({ clientId, jobs, onMessage });
    out[clientId] = agent;
  }
  return out;
}

interface StoredJobReply {
  clientId: string;
  jobId: string;
  topic: string;
  status: string;
  progress?: number;
  at: number;
  messageId: string;
}

/** A job status as EMQX's rule engine posts it (`message.publish`). */
function statusEvent(reply: StoredJobReply, id: string): Record<string, unknown> {
  const payload = JSON.stringify({ status: reply.status, ...(reply.progress !== undefined ? { progress: reply.progress } : {}) });
  return { event: 'message.publish', id, clientid: reply.clientId, username: reply.clientId, topic: reply.topic, qos: 1, payload, publish_received_at: reply.at, timestamp: reply.at };
}

describe('job retries per failure type', () => {
  it('publishes FAILED and TIMED_OUT executions again until they succeed or their retries are used up, counting retries; late reports of an earlier attempt change nothing', async () => {
    const agent = await devices({
      'rt-ok': {},
      'rt-flaky': { attempts: ['fail'] },
      'rt-bad': { behaviour: 'fail' },
      'rt-sleepy': { attempts: ['ignore'] },
      'rt-silent': { behaviour: 'ignore' },
    });
    const ids = Object.keys(agent);
    const started = await runCliWith(
      jobEnv.env.ops,
      ['campaign', 'start', '--targets', '-', '--expect-reply', '--reply-timeout', '4s', '--retry-failed', '2/1s', '--retry-timed-out', '1', '--payload', 'update', '--id', 'fw-retry', '--json'],
      `${ids.join('\n')}\n`,
    );
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);

    const summary = await jobEnv.env.ops.campaigns.handle('fw-retry').result();
    expect(summary.state).toBe('completed');
    // rt-flaky 1 retry, rt-bad 2 (used up), rt-sleepy 1, rt-silent 1 (used up).
    expect(summary.replies).toEqual({ queued: 0, inProgress: 0, succeeded: 3, failed: 1, rejected: 0, timedOut: 1, canceled: 0, retries: 5 });
    // Same job id every time; each device got its job once per attempt.
    expect(Object.fromEntries(ids.map((id) => [id, agent[id]?.jobs]))).toEqual({
      'rt-ok': ['fw-retry'],
      'rt-flaky': ['fw-retry', 'fw-retry'],
      'rt-bad': ['fw-retry', 'fw-retry', 'fw-retry'],
      'rt-sleepy': ['fw-retry', 'fw-retry'],
      'rt-silent': ['fw-retry', 'fw-retry'],
    });

    const status = await runCliWith(jobEnv.env.ops, ['campaign', 'status', 'fw-retry']);
    expect(status.stdout).toContain('devices report: succeeded 3  failed 1  rejected 0  timed out 1  in progress 0  queued 0  retries 5');
    const results = await runCliWith(jobEnv.env.ops, ['campaign', 'results', 'fw-retry', '--format', 'json']);
    const rows = JSON.parse(results.stdout) as CampaignResultRow[];
    expect(Object.fromEntries(rows.map((r) => [r.clientId, [r.replyStatus, r.replyRetries ?? 0]]))).toEqual({
      'rt-ok': ['SUCCEEDED', 0],
      'rt-flaky': ['SUCCEEDED', 1],
      'rt-bad': ['FAILED', 2],
      'rt-sleepy': ['SUCCEEDED', 1],
      'rt-silent': ['TIMED_OUT', 1],
    });
    const csv = await runCliWith(jobEnv.env.ops, ['campaign', 'results', 'fw-retry']);
    expect(csv.stdout.split('\n')[0]).toContain(',replyRetries');

    // EMQX's HTTP action sends requests side by side and again on failure: attempt 1's reports of
    // rt-flaky (IN_PROGRESS, FAILED) arriving now, redelivered under their own ids and under new
    // ones, and attempt 2's SUCCEEDED again, leave attempt 2's verdict standing.
    const executions = new JobExecutionStore(jobEnv.env.history.db);
    const before = await executions.get('fw-retry', 'rt-flaky');
    expect(before).toMatchObject({ status: 'SUCCEEDED', attempt: 2, retries: 1, failedRetries: 1 });
    const reports = await jobEnv.env.history.db.collection<StoredJobReply>('device_replies').find({ clientId: 'rt-flaky', jobId: 'fw-retry' }).sort({ at: 1 }).toArray();
    const firstAttempt = reports.filter((r) => r.at < (before?.attemptStartedAt ?? 0));
    expect(firstAttempt.map((r) => r.status)).toEqual(['IN_PROGRESS', 'FAILED']);
    const secondAttempt = reports.filter((r) => r.at >= (before?.attemptStartedAt ?? 0));
    expect(secondAttempt.map((r) => r.status)).toEqual(['IN_PROGRESS', 'SUCCEEDED']);
    const late = [
      ...firstAttempt.reverse().map((r) => statusEvent(r, r.messageId)),
      ...firstAttempt.map((r, i) => statusEvent(r, `${r.messageId}-redelivered-${i}`)),
      statusEvent(secondAttempt[0] as StoredJobReply, 'attempt-2-progress-again'),
      statusEvent(secondAttempt[1] as StoredJobReply, (secondAttempt[1] as StoredJobReply).messageId),
    ];
    const posted = await postEvents(jobEnv.env.adapterUrl, late, { authorization: `Bearer ${WEBHOOK_TOKEN}` }, '/emqx/replies');
    expect(posted.status).toBe(200);
    expect(posted.body).toMatchObject({ stored: 3 });
    // The late reports are applied in the background: wait until none is pending, then nothing moved.
    await waitFor(async () => (await new DeviceReplyStore(jobEnv.env.history.db).countUnapplied()) === 0, { what: 'the late reports applied' });
    expect(await executions.get('fw-retry', 'rt-flaky')).toEqual(before);
  });
});

describe('job retries in the recorded status', () => {
  it('status counts the retries from MongoDB when the workflow is gone', async () => {
    await devices({ 'rt-gone': { behaviour: 'fail' } });
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'fw-retry-gone',
      targets: { list: [{ clientId: 'rt-gone' }] },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'update' } },
      expectReply: { retry: { failed: { retries: 10, backoffMs: 0 } } },
    });
    await waitFor(async () => ((await jobEnv.env.ops.campaigns.status('fw-retry-gone')).replies?.retries ?? 0) >= 1, { what: 'a retry', timeoutMs: 60_000 });
    await jobEnv.env.ops.campaigns.handle('fw-retry-gone').terminate('test: the workflow is gone');
    const status = await jobEnv.env.ops.campaigns.status('fw-retry-gone');
    expect(status.state).toBe('aborted');
    expect(status.replies?.retries).toBeGreaterThanOrEqual(1);
  });
});

describe('the exponential ramp of a job', () => {
  it('steps on the executions the devices reported SUCCEEDED, not on deliveries', async () => {
    const silent = await devices(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`ramp-silent-${i}`, { behaviour: 'ignore' as const }])));
    const answering = await devices(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`ramp-ok-${i}`, {}])));
    const start = (campaignId: string, ids: string[]) =>
      jobEnv.env.ops.campaigns.start({
        campaignId,
        targets: { list: ids.map((clientId) => ({ clientId })) },
        message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'update' } },
        // One target a second; x5 after every 2 that succeeded.
        rollout: { batchSize: 1, concurrency: 1, exponentialRate: { baseRatePerMinute: 60, incrementFactor: 5, numberOfSucceededTargets: 2 } },
        expectReply: { timeoutMs: 2_000 },
      });

    await start('ramp-silent', Object.keys(silent));
    // Delivered to every device, none answering: the rate stays at its base.
    const delivered = await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('ramp-silent');
        return p.counts.delivered === 5 ? p : undefined;
      },
      { what: 'every silent device reached', timeoutMs: 60_000 },
    );
    expect(delivered.rateLimitPerMinute).toBe(60);
    const silentSummary = await jobEnv.env.ops.campaigns.handle('ramp-silent').result();
    expect(silentSummary.replies).toMatchObject({ timedOut: 5, succeeded: 0 });
    expect(silentSummary.rateLimitPerMinute).toBe(60);

    await start('ramp-ok', Object.keys(answering));
    const summary = await jobEnv.env.ops.campaigns.handle('ramp-ok').result();
    expect(summary.replies).toMatchObject({ succeeded: 5 });
    expect(summary.rateLimitPerMinute).toBeGreaterThan(60);
  });
});

describe('rollback on abort', () => {
  it('sends the rollback message, as campaign <id>-rollback, to the targets that succeeded or were in progress when too many failed', async () => {
    const agent = await devices({
      // Reports IN_PROGRESS at once and its verdict only after the abort.
      'rb-slow': { progress: [10], delayMs: 25_000 },
      'rb-ok-1': {},
      'rb-ok-2': {},
      'rb-fail-1': { behaviour: 'fail' },
      'rb-fail-2': { behaviour: 'fail' },
      'rb-fail-3': { behaviour: 'fail' },
      'rb-fail-4': { behaviour: 'fail' },
      'rb-late-1': {},
      'rb-late-2': {},
      'rb-late-3': {},
    });
    const ids = Object.keys(agent);
    // One target a second: the failures trip the criterion (read every 5 s) before the last are reached.
    const started = await runCliWith(
      jobEnv.env.ops,
      [
        'campaign', 'start', '--targets', '-', '--expect-reply', '--payload', 'update', '--id', 'fw-rb',
        '--rate', '60/min', '--batch-size', '1', '--concurrency', '1',
        '--abort-on', 'failed', '--abort-threshold', '50', '--abort-min-executed', '3',
        '--rollback-payload', '{"rollback":"${jobid}","to":"2.0"}', '--rollback-payload-format', 'json',
      ],
      `${ids.join('\n')}\n`,
    );
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);

    const summary = await jobEnv.env.ops.campaigns.handle('fw-rb').result();
    expect(summary.state).toBe('aborted');
    expect(summary.reason).toMatch(/reported FAILED/);
    expect(summary.rollback).toBe('fw-rb-rollback');

    const rows = JSON.parse((await runCliWith(jobEnv.env.ops, ['campaign', 'results', 'fw-rb', '--format', 'json'])).stdout) as CampaignResultRow[];
    const status = Object.fromEntries(rows.map((r) => [r.clientId, r.replyStatus]));
    expect(status['rb-slow']).toBe('CANCELED');
    expect(status['rb-ok-1']).toBe('SUCCEEDED');
    expect(ids.filter((id) => status[id] === 'FAILED').length).toBeGreaterThanOrEqual(2);
    // The rollback's targets: every device that succeeded, and the one in progress at the abort.
    const rolledBack = ids.filter((id) => status[id] === 'SUCCEEDED' || id === 'rb-slow');

    const rollback = await jobEnv.env.ops.campaigns.handle('fw-rb-rollback').result();
    expect(rollback).toMatchObject({ state: 'completed', rollbackOf: 'fw-rb', counts: { total: rolledBack.length, delivered: rolledBack.length } });
    expect(rollback.replies).toMatchObject({ succeeded: rolledBack.length, failed: 0 });
    for (const id of ids) {
      const got = (received.get(id) ?? []).filter((m) => m.topic === `devices/${id}/jobs/fw-rb-rollback`).map((m) => m.payload);
      expect(got, id).toEqual(rolledBack.includes(id) ? ['{"rollback":"fw-rb-rollback","to":"2.0"}'] : []);
    }

    // Linked both ways, in the workflow's answers and in what MongoDB recorded.
    expect((await jobEnv.env.ops.campaigns.status('fw-rb')).rollback).toBe('fw-rb-rollback');
    expect((await runCliWith(jobEnv.env.ops, ['campaign', 'status', 'fw-rb'])).stdout).toContain('rollback: campaign fw-rb-rollback');
    expect((await runCliWith(jobEnv.env.ops, ['campaign', 'status', 'fw-rb-rollback'])).stdout).toContain('rollback of: campaign fw-rb');
    const records = jobEnv.env.history.db.collection<{ _id: string; rollback?: string; rollbackOf?: string }>('campaigns');
    expect(await records.findOne({ _id: 'fw-rb' })).toMatchObject({ rollback: 'fw-rb-rollback' });
    expect(await records.findOne({ _id: 'fw-rb-rollback' })).toMatchObject({ rollbackOf: 'fw-rb' });
  });

  it('refuses a rollback without expectReply, naming the field', async () => {
    await expect(
      jobEnv.env.ops.campaigns.start({
        targets: { list: [{ clientId: 'x' }] },
        message: { topic: 'a/${clientid}', payload: { format: 'text', text: 'p' } },
        rollback: { message: { topic: 'a/${clientid}', payload: { format: 'text', text: 'back' } } },
      }),
    ).rejects.toThrow(/rollback: needs expectReply/);
  });
});
