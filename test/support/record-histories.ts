import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import mqtt from 'mqtt';
import { startBenchStack } from '../../bench/stack';
import type { PresenceEvent } from '../../src/domain/presence';
import { deliverPresenceEvents } from '../../src/temporal/presence-delivery';
import { commandDeviceConnectedSignal, commandReplySignal, commandStatusQuery } from '../../src/contracts/command';
import { REPLAY_FIXTURE_KEYS } from './replay-key';
import { JobExecutionStore } from '../../src/store/job-executions';

/**
 * Records one history per workflow into test/fixtures/histories, for the replay test. Overwriting
 * the histories of released code would hide a break of running workflows (see
 * test/workflows/replay.test.ts): after a release, record new behaviour under a new name instead:
 *   npx tsx test/support/record-histories.ts              # every workflow
 *   npx tsx test/support/record-histories.ts devicePresence   # only the named ones (the others are kept)
 */
async function main(): Promise<void> {
  const only = new Set(process.argv.slice(2));
  const wanted = (name: string): boolean => only.size === 0 || only.has(name);
  const stack = await startBenchStack({ payloadEncryptionKeys: REPLAY_FIXTURE_KEYS });
  const out = path.join(__dirname, '..', 'fixtures', 'histories');
  mkdirSync(out, { recursive: true });
  const manifestFile = path.join(out, 'workflow-ids.json');
  const manifest: Record<string, string> = only.size > 0 && existsSync(manifestFile) ? (JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, string>) : {};
  const save = async (name: string, workflowId: string, runId?: string): Promise<void> => {
    manifest[name] = workflowId;
    const history = await stack.temporal.workflow.getHandle(workflowId, runId).fetchHistory();
    writeFileSync(path.join(out, `${name}.json`), historyToJSON(history));
    console.log(`saved ${name} (${history.events?.length ?? 0} events)`);
  };
  try {
    if (wanted('devicePresence')) await recordPresence(stack, save);
    if (wanted('runCampaign') || wanted('devicePresenceCampaignWait') || wanted('runCampaignDrain')) await recordCampaign(stack, save);
    if (DEVICE_ADMINISTRATION.some(wanted)) await recordDeviceAdministration(stack, save);
    if (wanted('deviceCommand')) await recordCommand(stack, save);
    if (wanted('runCampaignContinuous')) await recordContinuousCampaign(stack, save);
    if (wanted('runCampaignJobRollback')) await recordJobCampaign(stack, save);
    writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  } finally {
    await stack.close();
  }
}

const DEVICE_ADMINISTRATION = ['provisionDevice', 'setDeviceAcl', 'setDesiredSubscriptions', 'rotateCredentials', 'kickDevice', 'deprovisionDevice', 'provisionFleet', 'provisionFleetChunk'];

/** Records every device-administration workflow (asking for one of them records them all). */
async function recordDeviceAdministration(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string) => Promise<void>): Promise<void> {
  const { ops } = stack;
  await ops.provision({ clientId: 'replay-1', password: 'replay-password', acl: [{ permission: 'allow', action: 'publish', topic: 'a/${clientid}' }, { permission: 'allow', action: 'subscribe', topic: 'c/#' }], subscriptions: [{ topic: 'c/replay-1', qos: 1 }] });
  await save('provisionDevice', 'provision/replay-1');
  await ops.setAcl('replay-1', [{ permission: 'allow', action: 'all', topic: 'b/#' }, { permission: 'allow', action: 'subscribe', topic: 'c/#' }]);
  await save('setDeviceAcl', 'acl/replay-1');
  await ops.setSubscriptions('replay-1', [{ topic: 'c/x', qos: 0 }]);
  await save('setDesiredSubscriptions', 'subscriptions/replay-1');
  await (await ops.startRotation({ clientId: 'replay-1', generatePassword: true, kick: true })).handle.result();
  await save('rotateCredentials', 'rotate/replay-1');
  await ops.kick('replay-1');
  await save('kickDevice', 'kick/replay-1');
  await (await ops.startDeprovisioning('replay-1')).result();
  await save('deprovisionDevice', 'deprovision/replay-1');
  const devices = Array.from({ length: 3 }, (_, i) => ({ clientId: `rf-${i}`, username: `rf-${i}`, password: `password-${i}-x`, acl: [], subscriptions: [], tags: [] }));
  const { handle } = await ops.startFleetProvisioning(devices);
  await handle.result();
  await save('provisionFleet', handle.workflowId);
  await save('provisionFleetChunk', `${handle.workflowId}/chunk-0`);
}

/** Polls until `check` holds (the harness's waitFor would pull vitest into this script). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`the workflow did not get there: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A device workflow through connect, an offline alarm escalated to level 2, ack, reconnect. The
 * device has a desired subscription, so each connect runs the re-apply (the device is not really
 * connected: EMQX answers "not found" and nothing is woken).
 */
async function recordPresence(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string) => Promise<void>): Promise<void> {
  const clientId = 'replay-presence';
  const taskQueue = stack.env.TEMPORAL_TASK_QUEUE ?? 'bench';
  const topic = `replay/${clientId}/cmd`;
  await stack.ops.provision({
    clientId,
    password: 'replay-password',
    acl: [{ permission: 'allow', action: 'subscribe', topic }],
    subscriptions: [{ topic, qos: 1 }],
    alarmPolicy: { graceMs: 500, escalationMs: [1_000] },
  });
  const t = Date.now();
  const send = (events: PresenceEvent[]) => deliverPresenceEvents(stack.temporal, { clientId, taskQueue, events });
  await send([{ kind: 'connected', key: `${clientId}|connected|${t}`, connectedAt: t }]);
  await send([{ kind: 'disconnected', key: `${clientId}|disconnected|${t}`, connectedAt: t, disconnectedAt: t + 10, reason: 'keepalive_timeout' }]);
  await until('alarm level 2', async () => (await stack.ops.presenceOf(clientId))?.alarm?.level === 2);
  await stack.ops.acknowledgeAlarm(clientId, { note: 'replay' });
  await send([{ kind: 'connected', key: `${clientId}|connected|${t + 5_000}`, connectedAt: t + 5_000 }]);
  await until('online again', async () => (await stack.ops.presenceOf(clientId))?.presence === 'online');
  // The query answers before the connect's effects ran: wait for the re-apply to finish too.
  await until('subscriptions re-applied', async () => {
    const history = await stack.temporal.workflow.getHandle(`device/${clientId}`).fetchHistory();
    const events = history.events ?? [];
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'reapplySubscriptionsAndFindCampaigns');
    return scheduled !== undefined && events.some((e) => e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() === scheduled.eventId?.toString());
  });
  await save('devicePresence', `device/${clientId}`);
}

/**
 * A campaign of three devices (batches of one): two online, one missing that waits; paused (a
 * reconnect signal arrives meanwhile) and resumed; the missing device connects, its device workflow
 * gets the connect with the waiting campaign and signals it, and the campaign delivers and
 * completes. Then a campaign that continues as new with a batch in flight (its first run).
 */
async function recordCampaign(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string, runId?: string) => Promise<void>): Promise<void> {
  const taskQueue = stack.env.TEMPORAL_TASK_QUEUE ?? 'bench';
  const ids = ['replay-c-0', 'replay-c-1', 'replay-c-late'];
  await stack.emqx.importUsers('plain', ids.map((id) => ({ user_id: id, password: 'replay-password' })));
  const clients: mqtt.MqttClient[] = [];
  const connect = async (clientId: string): Promise<void> => {
    const client = await mqtt.connectAsync(stack.broker.mqttUrl, { clientId, username: clientId, password: 'replay-password', reconnectPeriod: 0 });
    await client.subscribeAsync(`replay/${clientId}/cmd`, { qos: 1 });
    clients.push(client);
  };
  try {
    await connect('replay-c-0');
    await connect('replay-c-1');
    const started = await stack.ops.campaigns.start({
      campaignId: 'replay-campaign',
      targets: { list: ids.map((clientId) => ({ clientId })) },
      message: { topic: 'replay/${clientid}/cmd', payload: { format: 'text', text: 'hello' }, qos: 1 },
      rollout: { batchSize: 1, concurrency: 2 },
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 2, wakeBackoffMs: 200 },
      deadlineMs: 60_000,
    });
    await until('a target waiting', async () => (await stack.ops.campaigns.status(started.campaignId)).counts.waiting === 1);
    await stack.ops.campaigns.pause(started.campaignId);
    // A reconnect signal while paused is collected (and served after the resume).
    await stack.ops.campaigns.notifyDeviceOnline('replay-c-late');
    await stack.ops.campaigns.resume(started.campaignId);
    await connect('replay-c-late');
    const t = Date.now();
    // What the webhook adapter sends for a connect of a device a campaign waits for.
    await deliverPresenceEvents(stack.temporal, {
      clientId: 'replay-c-late',
      taskQueue,
      events: [{ kind: 'connected', key: `replay-c-late|connected|${t}`, connectedAt: t }],
      campaigns: [started.campaignId],
    });
    await stack.ops.campaigns.handle(started.campaignId).result();
    await save('runCampaign', started.workflowId);
    await save('devicePresenceCampaignWait', 'device/replay-c-late');

    // A run due to continue as new (one batch per run) while its batch is in flight: it drains first.
    const drain = await stack.ops.campaigns.start(
      {
        campaignId: 'replay-campaign-drain',
        targets: { list: ['replay-c-0', 'replay-c-1', 'replay-c-late', 'replay-c-0b'].map((clientId) => ({ clientId })) },
        message: { topic: 'replay/${clientid}/cmd', payload: { format: 'text', text: 'drain' }, qos: 1 },
        rollout: { batchSize: 1, concurrency: 2 },
      },
      { batchesPerRun: 1 },
    );
    await stack.ops.campaigns.handle(drain.campaignId).result();
    await save('runCampaignDrain', drain.workflowId, drain.runId);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
  }
}

/**
 * A job (expectReply) with a FAILED retry that fails again, an abort on the failures, and the
 * rollback campaign it starts for the targets that succeeded or were in progress. The device
 * reports are applied to the execution records as the webhook adapter applies them.
 */
async function recordJobCampaign(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string) => Promise<void>): Promise<void> {
  const ids = ['replay-j-0', 'replay-j-1', 'replay-j-2'];
  await stack.emqx.importUsers('plain', ids.map((id) => ({ user_id: id, password: 'replay-password' })));
  const clients = await Promise.all(
    ids.map(async (clientId) => {
      const client = await mqtt.connectAsync(stack.broker.mqttUrl, { clientId, username: clientId, password: 'replay-password', reconnectPeriod: 0 });
      await client.subscribeAsync(`devices/${clientId}/jobs/+`, { qos: 1 });
      return client;
    }),
  );
  const executions = new JobExecutionStore(stack.history.db);
  let messageId = 0;
  const report = (clientId: string, status: 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED') => executions.apply('replay-job', clientId, { status, at: Date.now(), messageId: `replay-${++messageId}` });
  const execution = async (clientId: string) => executions.get('replay-job', clientId);
  try {
    const started = await stack.ops.campaigns.start({
      campaignId: 'replay-job',
      targets: { list: ids.map((clientId) => ({ clientId })) },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'update' }, qos: 1 },
      rollout: { batchSize: 1, concurrency: 1 },
      abort: [{ failureType: 'failed', minExecuted: 2, thresholdPercent: 50 }],
      expectReply: { timeoutMs: 60_000, retry: { failed: { retries: 1, backoffMs: 0 } } },
      rollback: { message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'roll back' }, qos: 1 } },
    });
    await until('every target queued', async () => (await executions.counts('replay-job')).QUEUED === 3);
    await report('replay-j-2', 'IN_PROGRESS');
    await report('replay-j-1', 'FAILED');
    await until('the retry sent', async () => (await execution('replay-j-1'))?.attemptStartedAt !== undefined && (await execution('replay-j-1'))?.retryAt === undefined);
    await report('replay-j-0', 'SUCCEEDED');
    await report('replay-j-1', 'FAILED');
    const summary = await stack.ops.campaigns.handle(started.campaignId).result();
    if (summary.state !== 'aborted' || summary.rollback !== 'replay-job-rollback') throw new Error(`the job did not abort with a rollback: ${JSON.stringify(summary)}`);
    await save('runCampaignJobRollback', started.workflowId);
    await stack.ops.campaigns.cancel('replay-job-rollback', 'replay fixture recorded');
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
  }
}

/**
 * A command to a device that is offline: it waits, is woken by a connect (the device has not
 * subscribed yet, so it waits again), and ends with the reply, signalled as the webhook adapter
 * relays it.
 */
/** A continuous campaign: a device joins by its provisioning's signal, rescans run, a pause, then the close. */
async function recordContinuousCampaign(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string) => Promise<void>): Promise<void> {
  const { ops } = stack;
  await ops.provision({ clientId: 'replay-k-0', password: 'replay-password', tags: ['replay-k'] });
  const started = await ops.campaigns.start({
    campaignId: 'replay-continuous',
    targets: { selector: { tag: 'replay-k' } },
    message: { topic: 'replay/${clientid}/k', payload: { format: 'text', text: 'hello' }, qos: 1 },
    continuous: { rescanIntervalMs: 1_000 },
  });
  const settled = (total: number) => async () => {
    const p = await ops.campaigns.status(started.campaignId);
    return p.counts.total === total && p.counts.pending === 0;
  };
  await until('the first target final', settled(1));
  await ops.provision({ clientId: 'replay-k-1', password: 'replay-password', tags: ['replay-k'] });
  await until('the provisioned device joined', settled(2));
  const rescans = async (): Promise<number> => {
    const history = await ops.campaigns.handle(started.campaignId).fetchHistory();
    return (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'joinCampaignTargets').length;
  };
  await until('rescans ran', async () => (await rescans()) >= 3);
  await ops.campaigns.pause(started.campaignId);
  await ops.campaigns.resume(started.campaignId);
  await ops.campaigns.close(started.campaignId);
  await ops.campaigns.handle(started.campaignId).result();
  await save('runCampaignContinuous', started.workflowId);
}

async function recordCommand(stack: Awaited<ReturnType<typeof startBenchStack>>, save: (name: string, workflowId: string) => Promise<void>): Promise<void> {
  const sent = await stack.ops.commands.send({ clientId: 'replay-cmd', commandId: 'c1', payload: 'reboot', timeoutMs: 600_000, recheckMs: 600_000 });
  await until('the command waiting', async () => (await sent.handle.query(commandStatusQuery)).attempts === 1);
  await sent.handle.signal(commandDeviceConnectedSignal);
  await until('a second attempt', async () => (await sent.handle.query(commandStatusQuery)).attempts === 2);
  await sent.handle.signal(commandReplySignal, { status: 'SUCCEEDED', result: '{"ok":true}', messageId: 'replay-reply-1', at: Date.now() });
  await sent.handle.result();
  await save('deviceCommand', sent.workflowId);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
