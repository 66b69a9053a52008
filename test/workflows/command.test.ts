import type mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeviceAgent, type DeviceAgent, type DeviceAgentOptions } from '../../examples/device-agent/agent';
import { DeviceIdKey, DeviceOperationKey } from '../../src/domain/search-attributes';
import { DeviceReplyStore } from '../../src/store/job-replies';
import { JobExecutionStore } from '../../src/store/job-executions';
import { waitFor } from '../harness';
import { runCliWith } from '../support/cli-runner';
import { API_KEY, API_SECRET, connectDevice } from '../support/device-ops-env';
import { postEvents, startPresenceEnv, WEBHOOK_TOKEN, type PresenceTestEnv } from '../support/presence-env';

/**
 * Commands and job statuses end to end (docs/jobs.md), all real: the dev broker, devices running
 * the example agent over MQTT 3.1.1 (and one over MQTT 5), the broker's rule engine posting their replies to the webhook
 * adapter's /emqx/replies (the rule `emqx setup` creates, selecting EMQX's `message.publish`
 * event: https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1), the command workflow on the worker, and FerretDB.
 */

let env: PresenceTestEnv;
let replies: DeviceReplyStore;
let executions: JobExecutionStore;
const agents: DeviceAgent[] = [];

beforeAll(async () => {
  env = await startPresenceEnv();
  replies = new DeviceReplyStore(env.history.db);
  executions = new JobExecutionStore(env.history.db);
});

afterAll(async () => {
  await Promise.allSettled(agents.map((a) => a.stop()));
  await env?.close();
});

const passwordOf = (clientId: string): string => `${clientId}-password`;

/**
 * Requests the broker's replies action has had answered 2xx, and whether any is still queued or in
 * flight (EMQX's action metrics: GET /actions/{id}/metrics). The adapter answers only after
 * applying, so once a reply's request is answered its effect is in the store.
 */
async function repliesAnswered(): Promise<{ success: number; pending: number }> {
  const res = await fetch(`${env.broker.apiUrl}/actions/http:device_ops_replies/metrics`, {
    headers: { authorization: `Basic ${Buffer.from(`${API_KEY}:${API_SECRET}`).toString('base64')}` },
  });
  const { metrics } = (await res.json()) as { metrics: { success: number; inflight: number; queuing: number } };
  return { success: metrics.success, pending: metrics.inflight + metrics.queuing };
}

async function provision(clientId: string, acl: { permission: 'allow'; action: 'publish'; topic: string }[] = []): Promise<void> {
  await env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, acl, alarmPolicy: { graceMs: 600_000, escalationMs: [] } });
}

async function agent(clientId: string, options: Partial<DeviceAgentOptions> = {}): Promise<DeviceAgent> {
  const started = await startDeviceAgent({ url: env.broker.mqttUrl, clientId, password: passwordOf(clientId), protocolVersion: 4, ...options });
  agents.push(started);
  return started;
}

describe('commands', () => {
  it('a command to an online device resolves with the device reply', async () => {
    await provision('cmd-online');
    const device = await agent('cmd-online');
    const outcome = await env.ops.commands.sendAndWait({ clientId: 'cmd-online', commandId: 'reboot-1', payload: '{"op":"reboot"}', timeoutMs: 30_000 });
    expect(outcome.state).toBe('SUCCEEDED');
    expect(JSON.parse(outcome.reply?.result ?? 'null')).toEqual({ command: '{"op":"reboot"}', by: 'cmd-online' });
    expect(outcome.attempts).toBe(1);
    expect(device.commands).toEqual(['reboot-1']);
    const status = await env.ops.commands.status('cmd-online/reboot-1');
    expect(status).toMatchObject({ state: 'SUCCEEDED', running: false });
  });

  it('an MQTT 5 device gets the response topic and correlation data with the command and answers there with them', async () => {
    // PUBLISH properties 0x08 Response Topic and 0x09 Correlation Data (MQTT 5.0 §3.3.2.3.5-6), which
    // EMQX forwards to the subscriber (emqx_mgmt_api_publish.erl `to_property/3` sets them from `properties`:
    // https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl).
    await provision('cmd-mqtt5');
    const device = await agent('cmd-mqtt5', { protocolVersion: 5 });
    const received: mqtt.IPublishPacket[] = [];
    const sent: mqtt.IPublishPacket[] = [];
    device.client.on('message', (_topic, _payload, packet) => received.push(packet));
    device.client.on('packetsend', (packet) => {
      if (packet.cmd === 'publish') sent.push(packet);
    });
    const outcome = await env.ops.commands.sendAndWait({ clientId: 'cmd-mqtt5', commandId: 'fw-5', payload: '{"op":"update"}', timeoutMs: 30_000 });
    expect(outcome.state).toBe('SUCCEEDED');
    expect(JSON.parse(outcome.reply?.result ?? 'null')).toEqual({ command: '{"op":"update"}', by: 'cmd-mqtt5' });
    expect(device.commands).toEqual(['fw-5']);
    expect(received).toHaveLength(1);
    const replyTopic = 'devices/cmd-mqtt5/commands/fw-5/reply';
    expect(received[0]?.properties?.responseTopic).toBe(replyTopic);
    expect(received[0]?.properties?.correlationData?.toString()).toBe('fw-5');
    expect(sent.map((p) => [p.topic, p.properties?.correlationData?.toString()])).toEqual([[replyTopic, 'fw-5']]);
  });

  it('a command to an offline device is delivered when it connects, and answered', async () => {
    await provision('cmd-later');
    // Rechecks only every minute: within the test, only the adapter's wake-up on connect can deliver it.
    const sent = await env.ops.commands.send({ clientId: 'cmd-later', commandId: 'fetch-logs', payload: 'logs', timeoutMs: 60_000, recheckMs: 60_000 });
    await waitFor(async () => (await env.ops.commands.status(sent.workflowId)).state === 'WAITING_FOR_DEVICE', { what: 'the command waiting', timeoutMs: 20_000 });
    const waiting = await env.ops.commands.status(sent.workflowId);
    expect(waiting).toMatchObject({ running: true, attempts: 1 });
    // Found by device in the Temporal UI: DeviceId="cmd-later".
    const described = await sent.handle.describe();
    expect([described.typedSearchAttributes.get(DeviceIdKey), described.typedSearchAttributes.get(DeviceOperationKey)]).toEqual(['cmd-later', 'command']);

    await agent('cmd-later');
    const outcome = await sent.handle.result();
    expect(outcome.state).toBe('SUCCEEDED');
    expect(outcome.attempts).toBe(2);
    expect(Date.parse(outcome.deliveredAt ?? '')).toBeLessThan(Date.parse(outcome.deadlineAt));
  });

  it('a command nobody answers ends TIMED_OUT', async () => {
    await provision('cmd-silent');
    const device = await agent('cmd-silent', { commands: { behaviour: 'ignore' } });
    const outcome = await env.ops.commands.sendAndWait({ clientId: 'cmd-silent', commandId: 'ping', payload: 'ping', timeoutMs: 3_000 });
    expect(outcome.state).toBe('TIMED_OUT');
    expect(outcome.deliveredAt).toBeDefined();
    expect(device.commands).toEqual(['ping']);
  });

  it('a device cannot answer another device command', async () => {
    await provision('cmd-target');
    await provision('cmd-neighbour');
    // Allowed by its ACL to publish on every reply topic: only the adapter's check stands in its way.
    await provision('cmd-forger', [{ permission: 'allow', action: 'publish', topic: 'devices/+/commands/+/reply' }]);
    await agent('cmd-target', { commands: { behaviour: 'ignore' } });
    const neighbour = await connectDevice(env.broker, 'cmd-neighbour', 'cmd-neighbour', passwordOf('cmd-neighbour'));
    const forger = await connectDevice(env.broker, 'cmd-forger', 'cmd-forger', passwordOf('cmd-forger'));
    try {
      const sent = await env.ops.commands.send({ clientId: 'cmd-target', commandId: 'unlock', payload: 'unlock', timeoutMs: 8_000 });
      await waitFor(async () => (await env.ops.commands.status(sent.workflowId)).state === 'DELIVERED', { what: 'delivery', timeoutMs: 20_000 });
      const forged = JSON.stringify({ status: 'SUCCEEDED', result: 'forged' });
      // `--jobs` gives the neighbour its own topics only: the broker drops this one.
      await neighbour.publishAsync('devices/cmd-target/commands/unlock/reply', forged, { qos: 1 });
      await forger.publishAsync('devices/cmd-target/commands/unlock/reply', forged, { qos: 1 });
      const recorded = await waitFor(async () => (await replies.repliesOf('cmd-target')).find((r) => r.publisher === 'cmd-forger'), { what: 'the forged reply recorded' });
      expect(recorded).toMatchObject({ accepted: false, kind: 'command', commandId: 'unlock' });
      expect(recorded.accepted ? '' : recorded.problem).toContain('published by client "cmd-forger"');
      const outcome = await sent.handle.result();
      expect(outcome.state).toBe('TIMED_OUT');
      expect((await replies.repliesOf('cmd-target')).map((r) => r.publisher)).toEqual(['cmd-forger']);
    } finally {
      await Promise.allSettled([neighbour.endAsync(), forger.endAsync()]);
    }
  });

  it('a bad reply payload is recorded and moves nothing; the good reply after it ends the command', async () => {
    await provision('cmd-sloppy');
    const device = await connectDevice(env.broker, 'cmd-sloppy', 'cmd-sloppy', passwordOf('cmd-sloppy'));
    try {
      await device.subscribeAsync('devices/cmd-sloppy/commands/+', { qos: 1 });
      const sent = await env.ops.commands.send({ clientId: 'cmd-sloppy', commandId: 'c1', payload: 'x', timeoutMs: 30_000 });
      await waitFor(async () => (await env.ops.commands.status(sent.workflowId)).state === 'DELIVERED', { what: 'delivery', timeoutMs: 20_000 });
      await device.publishAsync('devices/cmd-sloppy/commands/c1/reply', JSON.stringify({ status: 'DONE' }), { qos: 1 });
      const bad = await waitFor(async () => (await replies.repliesOf('cmd-sloppy')).find((r) => !r.accepted), { what: 'the bad reply recorded' });
      expect(bad).toMatchObject({ accepted: false, problem: 'payload.status: must be one of SUCCEEDED, FAILED, REJECTED', payload: '{"status":"DONE"}' });
      expect((await env.ops.commands.status(sent.workflowId)).state).toBe('DELIVERED');

      await device.publishAsync('devices/cmd-sloppy/commands/c1/reply', JSON.stringify({ status: 'FAILED', result: { code: 7 } }), { qos: 1 });
      const outcome = await sent.handle.result();
      expect(outcome).toMatchObject({ state: 'FAILED', reply: { status: 'FAILED', result: '{"code":7}' } });
    } finally {
      await device.endAsync();
    }
  });
});

describe('provision --jobs', () => {
  it('lets a device take and answer its own jobs and commands, and nothing of another device', async () => {
    const run = await runCliWith(env.ops, ['provision', 'jobs-acl', '--password-stdin', '--jobs', '--wait', '--json'], passwordOf('jobs-acl'));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rules = await env.emqx.getAclRules({ clientid: 'jobs-acl' });
    expect(rules?.slice(0, 4)).toMatchObject([
      { topic: 'devices/jobs-acl/jobs/+', permission: 'allow', action: 'subscribe' },
      { topic: 'devices/jobs-acl/commands/+', permission: 'allow', action: 'subscribe' },
      { topic: 'devices/jobs-acl/jobs/+/status', permission: 'allow', action: 'publish' },
      { topic: 'devices/jobs-acl/commands/+/reply', permission: 'allow', action: 'publish' },
    ]);
    const device = await connectDevice(env.broker, 'jobs-acl', 'jobs-acl', passwordOf('jobs-acl'));
    try {
      // mqtt.js rejects a SUBSCRIBE with a refused topic; the grants are on the error's packet.
      const granted = await device.subscribeAsync(['devices/jobs-acl/commands/+', 'devices/other/commands/+', 'devices/+/jobs/+'], { qos: 1 }).catch((err: { packet?: { granted?: number[] } }) => err.packet?.granted);
      expect(granted).toEqual([1, 128, 128]);
    } finally {
      await device.endAsync();
    }
  });

  it('the agent of a device provisioned without --jobs says what is missing', async () => {
    await env.ops.provision({ clientId: 'jobs-none', password: passwordOf('jobs-none') });
    await expect(agent('jobs-none')).rejects.toThrow('device jobs-none: subscription refused for devices/jobs-none/jobs/+, devices/jobs-none/commands/+; provision the device with --jobs');
  });
});

describe('device-ops command', () => {
  it('send --wait --json prints the device reply; status reads it back', async () => {
    await provision('cmd-cli');
    await agent('cmd-cli');
    const sent = await runCliWith(env.ops, ['command', 'send', 'cmd-cli', '--payload', 'hello', '--id', 'greet', '--timeout', '20s', '--wait', '--json']);
    expect(sent.stderr).toBe('');
    expect(sent.code).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ clientId: 'cmd-cli', commandId: 'greet', workflowId: 'command/cmd-cli/greet', state: 'SUCCEEDED', reply: { status: 'SUCCEEDED', result: { command: 'hello', by: 'cmd-cli' } } });
    const status = await runCliWith(env.ops, ['command', 'status', 'command/cmd-cli/greet', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: 'SUCCEEDED', running: false });
    const again = await runCliWith(env.ops, ['command', 'send', 'cmd-cli', '--payload', 'hello', '--id', 'greet']);
    expect(again).toMatchObject({ code: 2, stderr: 'error: commandId: command greet already exists for cmd-cli; use another id\n' });
  });

  it('send --wait exits 1 when the device does not answer SUCCEEDED', async () => {
    await provision('cmd-cli-no');
    await agent('cmd-cli-no', { commands: { behaviour: 'reject' } });
    const sent = await runCliWith(env.ops, ['command', 'send', 'cmd-cli-no', '--payload', 'x', '--wait']);
    expect(sent.code).toBe(1);
    expect(sent.stdout).toMatch(/^command cmd-[0-9a-f]{16} to cmd-cli-no: REJECTED/);
    expect(sent.stderr).toMatch(/ended REJECTED/);
  });

  it.each([
    [['--payload', 'x', '--timeout', 'soon'], '--timeout: "soon" must be a duration such as 30s, 10m, 2h, 1d'],
    [['--payload', 'x', '--timeout', '500ms'], '--timeout: must be at least 1s'],
    [['--payload', 'x', '--qos', '3'], '--qos: "3" must be 0, 1 or 2'],
    [['--payload', 'x', '--topic', 'devices/${clientid}/cmd'], '--topic: must hold ${commandid} exactly once as a whole level (the device reads the command id from the topic)'],
    [['--payload', 'x', '--id', 'a/b'], '--id: must not contain "/"'],
  ])('send %j is refused before connecting', async (args, message) => {
    const run = await runCliWith(env.ops, ['command', 'send', 'cmd-cli', ...args]);
    expect(run).toMatchObject({ code: 2, connected: false });
    expect(run.stderr).toContain(message);
  });

  it('status of an unknown command says so', async () => {
    const run = await runCliWith(env.ops, ['command', 'status', 'cmd-cli/nope']);
    expect(run).toMatchObject({ code: 1, stderr: 'error: no command command/cmd-cli/nope\n' });
    expect(await runCliWith(env.ops, ['command', 'status', 'just-one-part'])).toMatchObject({ code: 2, connected: false });
  });
});

describe('job statuses', () => {
  it('a device running a job reports IN_PROGRESS then SUCCEEDED into its execution record', async () => {
    await provision('job-runner');
    const device = await agent('job-runner', { jobs: { behaviour: 'succeed', progress: [25, 75] } });
    await env.emqx.publish({ topic: 'devices/job-runner/jobs/firmware-7', payload: '{"url":"https://example.com/fw-7.bin"}', qos: 1 });
    const done = await waitFor(async () => {
      const execution = await executions.get('firmware-7', 'job-runner');
      return execution?.status === 'SUCCEEDED' ? execution : null;
    }, { what: 'the job to succeed', timeoutMs: 20_000 }).catch(async (err: unknown) => {
      const recorded = await replies.repliesOf('job-runner');
      throw new Error(`${(err as Error).message}; device got ${JSON.stringify(device.jobs)}, published ${JSON.stringify(device.published)}; recorded ${JSON.stringify(recorded)}; execution ${JSON.stringify(await executions.get('firmware-7', 'job-runner'))}`);
    });
    expect(device.jobs).toEqual(['firmware-7']);
    expect(done).toMatchObject({ progress: 100, details: '{"finishedBy":"job-runner"}' });
    // EMQX's HTTP action sends requests side by side, so the SUCCEEDED may be applied before the progress reports.
    const recorded = await waitFor(async () => {
      const all = await replies.repliesOf('job-runner');
      return all.length === 3 ? all : null;
    }, { what: 'three replies recorded' });
    expect(recorded.map((r) => (r.accepted && r.kind === 'job' ? [r.status, r.progress] : null)).sort()).toEqual([
      ['IN_PROGRESS', 25],
      ['IN_PROGRESS', 75],
      ['SUCCEEDED', undefined],
    ]);
    expect((await executions.counts('firmware-7')).SUCCEEDED).toBe(1);
  });

  it('duplicate and reordered status messages leave the right final state', async () => {
    await provision('job-noisy');
    const device = await connectDevice(env.broker, 'job-noisy', 'job-noisy', passwordOf('job-noisy'));
    try {
      const answeredBefore = (await repliesAnswered()).success;
      const topic = 'devices/job-noisy/jobs/j1/status';
      const send = (body: object) => device.publishAsync(topic, JSON.stringify(body), { qos: 1 });
      await send({ status: 'IN_PROGRESS', progress: 40 });
      await send({ status: 'IN_PROGRESS', progress: 40 });
      await send({ status: 'SUCCEEDED', details: { version: '7' } });
      await send({ status: 'SUCCEEDED', details: { version: '7' } });
      // Late: the job is over; this does not move it back.
      await send({ status: 'IN_PROGRESS', progress: 90 });
      await send({ status: 'IN_PROGRESS', progress: 'most' });
      await waitFor(async () => {
        const answered = await repliesAnswered();
        return answered.success - answeredBefore >= 6 && answered.pending === 0;
      }, { what: 'all six replies answered by the adapter', timeoutMs: 20_000 });
      expect(await replies.repliesOf('job-noisy')).toHaveLength(6);
      const execution = await executions.get('j1', 'job-noisy');
      expect(execution).toMatchObject({ status: 'SUCCEEDED', progress: 100, details: '{"version":"7"}' });
      const refused = (await replies.repliesOf('job-noisy')).filter((r) => !r.accepted);
      expect(refused.map((r) => (r.accepted ? '' : r.problem))).toEqual(['payload.progress: must be a number']);
    } finally {
      await device.endAsync();
    }
  });

  it('a reply EMQX delivers twice is stored and applied once; a request without the token stores nothing', async () => {
    const event = {
      event: 'message.publish',
      id: '0006123ABCDEF0000000000000000001',
      clientid: 'job-twice',
      username: 'job-twice',
      topic: 'devices/job-twice/jobs/j2/status',
      qos: 1,
      payload: JSON.stringify({ status: 'IN_PROGRESS', progress: 10 }),
      publish_received_at: Date.now(),
      timestamp: Date.now(),
    };
    const unauthorized = await postEvents(env.adapterUrl, event, { authorization: 'Bearer wrong-token-0123456789' }, '/emqx/replies');
    expect(unauthorized.status).toBe(401);
    const first = await postEvents(env.adapterUrl, event, { authorization: `Bearer ${WEBHOOK_TOKEN}` }, '/emqx/replies');
    const again = await postEvents(env.adapterUrl, [event], { authorization: `Bearer ${WEBHOOK_TOKEN}` }, '/emqx/replies');
    expect(first).toEqual({ status: 200, body: { replies: 1, stored: 1, refused: 0, ignored: 0 } });
    expect(again).toEqual({ status: 200, body: { replies: 1, stored: 0, refused: 0, ignored: 0 } });
    // Applied in the background, once: the stored reply is no longer pending and moved the execution one step.
    await waitFor(async () => (await replies.countUnapplied()) === 0, { what: 'the reply applied' });
    expect(await executions.get('j2', 'job-twice')).toMatchObject({ status: 'IN_PROGRESS', progress: 10, updates: 1 });
  });
});
