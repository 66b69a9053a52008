import type mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import type { DeviceAgent, DeviceAgentOptions } from '../../examples/device-agent/agent';
import { campaignWorkflowId } from '../../src/contracts/campaign';
import { DEFAULT_DEVICE_TOPICS } from '../../src/domain/device-topics';
import type { CampaignResultRow } from '../../src/store/campaigns';
import { waitFor } from '../harness';
import { runCliWith } from '../support/cli-runner';
import { passwordOf, QUIET_ALARMS, useJobTestEnv } from '../support/job-env';

/**
 * A campaign whose targets report the job (docs/jobs.md), end to end on the real stack: the dev
 * broker, devices running the example agent over MQTT 3.1.1, the broker's rule engine posting
 * their statuses to the webhook adapter's /emqx/replies (the `message.publish` event:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1), the campaign workflow on the worker reading the execution counts from
 * FerretDB on a timer.
 *
 * A job carries where to answer as MQTT 5 properties, as a command does: Response Topic (0x08) =
 * the target's job status topic, Correlation Data (0x09) = the job id (MQTT 5.0 §3.3.2.3.5-6),
 * published through EMQX's /publish/bulk with `properties.response_topic` and
 * `properties.correlation_data` (`to_property/3` in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl, as
 * emqx_mgmt_api_publish_SUITE `t_publish_api` sends them), which the dev broker passes to MQTT 5
 * subscribers.
 */

const jobEnv = useJobTestEnv();

function agent(clientId: string, jobs: DeviceAgentOptions['jobs'] = {}, options: Partial<DeviceAgentOptions> = {}): Promise<DeviceAgent> {
  return jobEnv.startAgent({ clientId, jobs, ...options });
}

/** A provisioned device (with the job ACL) running the example agent with these options. */
async function jobDevice(clientId: string, options: Partial<DeviceAgentOptions>): Promise<DeviceAgent> {
  await jobEnv.env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, alarmPolicy: QUIET_ALARMS });
  return agent(clientId, {}, options);
}

describe('campaigns with device-reported execution', () => {
  it('ends when every target answered or timed out: succeeded, failed, rejected, timed out, and an offline device that came back', async () => {
    const ids = ['job-ok-1', 'job-ok-2', 'job-fail', 'job-reject', 'job-silent', 'job-late'];
    for (const clientId of ids) await jobEnv.env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, alarmPolicy: QUIET_ALARMS });
    const ok1 = await agent('job-ok-1');
    await agent('job-ok-2', { delayMs: 500 });
    await agent('job-fail', { behaviour: 'fail' });
    await agent('job-reject', { behaviour: 'reject' });
    const silent = await agent('job-silent', { behaviour: 'ignore' });

    // No --topic: the job goes to JOB_TOPIC, devices/${clientid}/jobs/${jobid}, the job id being the campaign id.
    const started = await runCliWith(
      jobEnv.env.ops,
      ['campaign', 'start', '--targets', '-', '--expect-reply', '--reply-timeout', '6s', '--wait-offline', '--recheck', '2s', '--payload', '{"job":"${jobid}","firmware":"2.1"}', '--payload-format', 'json', '--id', 'fw-21', '--json'],
      `${ids.join('\n')}\n`,
    );
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);

    // The devices online answer; the silent one's execution stays QUEUED until its reply timeout.
    const answered = await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('fw-21');
        return p.replies && p.replies.succeeded === 2 && p.replies.failed === 1 && p.replies.rejected === 1 ? p : undefined;
      },
      { what: 'the online devices answered', timeoutMs: 60_000 },
    );
    expect(answered.state).toBe('running');
    expect(answered.counts).toMatchObject({ delivered: 5, waiting: 1 });
    expect(ok1.jobs).toEqual(['fw-21']);
    expect(silent.jobs).toEqual(['fw-21']);

    // The offline device comes back: its job is delivered then, and it answers.
    const late = await agent('job-late');
    const summary = await jobEnv.env.ops.campaigns.handle('fw-21').result();
    expect(late.jobs).toEqual(['fw-21']);
    expect(summary.state).toBe('completed');
    expect(summary.counts).toMatchObject({ total: 6, delivered: 6, pending: 0 });
    expect(summary.replies).toEqual({ queued: 0, inProgress: 0, succeeded: 3, failed: 1, rejected: 1, timedOut: 1, canceled: 0 });
    expect((await jobEnv.env.ops.campaigns.status('fw-21')).replies).toEqual(summary.replies);

    const status = await runCliWith(jobEnv.env.ops, ['campaign', 'status', 'fw-21']);
    expect(status.stdout).toContain('devices report: succeeded 3  failed 1  rejected 1  timed out 1  in progress 0  queued 0');

    const results = await runCliWith(jobEnv.env.ops, ['campaign', 'results', 'fw-21', '--format', 'json']);
    expect(results.code).toBe(0);
    const rows = JSON.parse(results.stdout) as CampaignResultRow[];
    // A failing device's IN_PROGRESS may be applied after its FAILED (EMQX's HTTP action sends side
    // by side) and then changes nothing, so its progress is left out; a success is always 100.
    const byDevice = Object.fromEntries(
      rows.map((r) => [r.clientId, { status: r.status, replyStatus: r.replyStatus, ...(r.replyStatus === 'FAILED' ? {} : { replyProgress: r.replyProgress }), replyDetails: r.replyDetails }]),
    );
    expect(byDevice).toEqual({
      'job-ok-1': { status: 'delivered', replyStatus: 'SUCCEEDED', replyProgress: 100, replyDetails: '{"finishedBy":"job-ok-1"}' },
      'job-ok-2': { status: 'delivered', replyStatus: 'SUCCEEDED', replyProgress: 100, replyDetails: '{"finishedBy":"job-ok-2"}' },
      'job-fail': { status: 'delivered', replyStatus: 'FAILED', replyDetails: '{"reason":"the job failed on the device"}' },
      'job-reject': { status: 'delivered', replyStatus: 'REJECTED', replyProgress: undefined, replyDetails: '{"reason":"not accepted by this device"}' },
      'job-silent': { status: 'delivered', replyStatus: 'TIMED_OUT', replyProgress: undefined, replyDetails: undefined },
      'job-late': { status: 'delivered', replyStatus: 'SUCCEEDED', replyProgress: 100, replyDetails: '{"finishedBy":"job-late"}' },
    });
    const csv = await runCliWith(jobEnv.env.ops, ['campaign', 'results', 'fw-21']);
    expect(csv.stdout.split('\n')[0]).toContain(',replyStatus,replyProgress,replyDetails');
  });

  it('an MQTT 5 device answers a job on its response topic with the correlation data; an MQTT 3.1.1 device on the convention, in one campaign', async () => {
    // The MQTT 5 device knows no status topic of its own: its fallback is a topic its ACL refuses,
    // so only an answer on the response topic can reach the campaign.
    const v5 = await jobDevice('job5-dev', { protocolVersion: 5, topics: { ...DEFAULT_DEVICE_TOPICS, jobStatus: 'nowhere/${clientid}/${jobid}' } });
    const v4 = await jobDevice('job4-dev', { protocolVersion: 4 });
    const received: mqtt.IPublishPacket[] = [];
    const sent: mqtt.IPublishPacket[] = [];
    v5.client.on('message', (_topic, _payload, packet) => received.push(packet));
    v5.client.on('packetsend', (packet) => {
      if (packet.cmd === 'publish') sent.push(packet);
    });

    await jobEnv.env.ops.campaigns.start({
      campaignId: 'job-v5',
      targets: { list: [{ clientId: 'job5-dev' }, { clientId: 'job4-dev' }] },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'json', text: '{"job":"${jobid}"}' } },
      expectReply: { timeoutMs: 60_000 },
    });
    const summary = await jobEnv.env.ops.campaigns.handle('job-v5').result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 2, delivered: 2 } });
    expect(summary.replies).toEqual({ queued: 0, inProgress: 0, succeeded: 2, failed: 0, rejected: 0, timedOut: 0, canceled: 0 });

    const statusTopic = 'devices/job5-dev/jobs/job-v5/status';
    expect(v5.jobs).toEqual(['job-v5']);
    expect(received).toHaveLength(1);
    expect(received[0]?.properties?.responseTopic).toBe(statusTopic);
    expect(received[0]?.properties?.correlationData?.toString()).toBe('job-v5');
    expect(received[0]?.properties?.userProperties).toMatchObject({ jobId: 'job-v5' });
    // IN_PROGRESS then SUCCEEDED, both on the response topic with the correlation data.
    expect(sent.map((p) => [p.topic, p.properties?.correlationData?.toString()])).toEqual([
      [statusTopic, 'job-v5'],
      [statusTopic, 'job-v5'],
    ]);
    // The MQTT 3.1.1 device got no properties and answered on the status topic convention.
    expect(v4.jobs).toEqual(['job-v5']);
    expect(v4.published.map((p) => p.topic)).toEqual(['devices/job4-dev/jobs/job-v5/status', 'devices/job4-dev/jobs/job-v5/status']);

  }, 120_000);

  it('waits for late answers inside the reply poll, not in a workflow timer between polls, and ends once they are applied', async () => {
    await jobEnv.env.ops.provision({ clientId: 'job-slow', password: passwordOf('job-slow'), jobs: true, alarmPolicy: QUIET_ALARMS });
    // Answers 2 s after the job arrives: after the first poll, which runs as soon as the job is delivered.
    const slow = await agent('job-slow', { delayMs: 2_000 });
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'job-slow-1',
      targets: { list: [{ clientId: 'job-slow' }] },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'json', text: '{"job":"${jobid}"}' } },
      expectReply: { timeoutMs: 60_000 },
    });
    const summary = await jobEnv.env.ops.campaigns.handle('job-slow-1').result();
    expect(summary.replies).toMatchObject({ succeeded: 1, queued: 0, inProgress: 0 });
    expect(slow.jobs).toEqual(['job-slow-1']);
    // The poll interval (5 s) passed inside the poll activity: no timer as short as it, and the
    // answer was seen by the poll that was waiting for it.
    const events = (await jobEnv.env.temporal.workflow.getHandle(campaignWorkflowId('job-slow-1')).fetchHistory()).events ?? [];
    const shortTimers = events.filter((e) => e.timerStartedEventAttributes && Number(e.timerStartedEventAttributes.startToFireTimeout?.seconds ?? 0) <= 5);
    expect(shortTimers).toEqual([]);
    const polls = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'pollCampaignReplies');
    expect(polls.length).toBeGreaterThanOrEqual(1);
    expect(polls.length).toBeLessThanOrEqual(2);
  }, 120_000);

  it('aborts the rollout when the share of devices reporting FAILED reaches the criterion, leaving no execution open', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => `abort-dev-${i}`);
    for (const clientId of ids) await jobEnv.env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, alarmPolicy: QUIET_ALARMS });
    // The first four fail and the rest would succeed, but at 60 targets a minute the rollout is still
    // publishing when the failures come in.
    for (const [i, clientId] of ids.entries()) await agent(clientId, { behaviour: i < 4 ? 'fail' : 'succeed' });
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'fw-abort',
      targets: { list: ids.map((clientId) => ({ clientId })) },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'update' } },
      rollout: { maximumPerMinute: 60, batchSize: 1, concurrency: 1 },
      abort: [{ failureType: 'failed', minExecuted: 3, thresholdPercent: 50 }],
      expectReply: { timeoutMs: 600_000 },
    });
    const summary = await jobEnv.env.ops.campaigns.handle('fw-abort').result();
    expect(summary.state).toBe('aborted');
    expect(summary.reason).toMatch(/^abort criterion met: \d+ of \d+ targets that answered or timed out reported FAILED/);
    // Stopped before every device was reached (the counts are read every 5 s, so a few that
    // succeed may be reached first).
    expect(summary.counts.cancelled).toBeGreaterThan(0);
    expect(summary.replies?.failed).toBeGreaterThanOrEqual(3);
    expect(summary.counts.delivered).toBeLessThan(ids.length);
    expect((summary.replies?.queued ?? 0) + (summary.replies?.inProgress ?? 0)).toBe(0);
  });

  it('status reads the device-reported counts from MongoDB when the workflow is gone', async () => {
    await jobEnv.env.ops.provision({ clientId: 'gone-dev', password: passwordOf('gone-dev'), jobs: true, alarmPolicy: QUIET_ALARMS });
    await agent('gone-dev', { behaviour: 'ignore' });
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'fw-gone',
      targets: { list: [{ clientId: 'gone-dev' }] },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'update' } },
      expectReply: {},
    });
    await waitFor(async () => (await jobEnv.env.ops.campaigns.status('fw-gone')).replies?.queued === 1, { what: 'the execution queued', timeoutMs: 30_000 });
    await jobEnv.env.ops.campaigns.handle('fw-gone').terminate('test: the workflow is gone');
    const status = await jobEnv.env.ops.campaigns.status('fw-gone');
    expect(status).toMatchObject({ state: 'aborted', replies: { queued: 1, succeeded: 0 } });
  });
});
