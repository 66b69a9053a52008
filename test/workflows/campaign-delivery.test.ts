import { MockActivityEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { connectAsync, type IPublishPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCampaignActivities } from '../../src/activities/campaign';
import { createDataConverter } from '../../src/codec/data-converter';
import { CampaignRequest, type ChunkReport, type TargetPolicy } from '../../src/domain/schemas/campaign';
import { BULK_REQUESTS_PER_BATCH } from '../../src/domain/campaign-rollout';
import { EmqxError, type EmqxClient } from '../../src/emqx';
import { CampaignStore, finalRecord } from '../../src/store/campaigns';
import { START_LEASE_MS } from '../../src/starter/client/campaigns';
import { MqttPublisher } from '../../src/emqx/mqtt-publisher';
import { createDeviceOpsWorker, workflowsPath } from '../../src/worker';
import { stackEndpoints, uniqueName, waitFor, workerConnection } from '../harness';
import { DEVICE_PASSWORD, ids, registerDevices, TestDevices } from '../support/campaign-devices';
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

const TOPIC = 'campaign/${clientid}/cmd';

/**
 * Runs chunk 0's publishing activity directly, against an EMQX client whose bulk publish the test
 * wraps (the session reads go to the real one).
 */
function batchRunner(campaignId: string, publishBulk: EmqxClient['publishBulk'], policy: TargetPolicy, sizes: { limit: number; requestSize?: number }) {
  const emqx = Object.create(env.emqx) as EmqxClient;
  emqx.publishBulk = publishBulk;
  emqx.listClients = (query, opts) => env.emqx.listClients(query, opts);
  const activities = createCampaignActivities({ emqx, history: env.history });
  return (batchId: string): Promise<ChunkReport> =>
    new MockActivityEnvironment().run(activities.publishCampaignBatch, { campaignId, chunk: 0, ...sizes, transport: 'rest' as const, policy, batchId });
}

/** A running campaign of `targets` (one chunk) written straight to the store, for batchRunner; returns its id and the store. */
async function seedCampaign(prefix: string, targets: string[], text: string, waitOffline = false): Promise<{ campaignId: string; store: CampaignStore }> {
  const campaignId = uniqueName(prefix);
  const store = new CampaignStore(env.history.db);
  await store.createCampaign(
    { campaignId, workflowId: `campaign/${campaignId}`, state: 'running', active: true, transport: 'rest', waitOffline, createdAt: new Date().toISOString(), startAttempt: 'a1', targets: { source: 'list' } },
    { topic: TOPIC, payload: { format: 'text', text }, qos: 1, retain: false },
  );
  await store.writeChunks(campaignId, targets.map((clientId) => ({ clientId })));
  return { campaignId, store };
}

/** `count` registered, connected devices and a running campaign to them (seedCampaign), with the default target policy. */
async function connectedCampaign(prefix: string, count: number, text: string): Promise<{ targets: string[]; campaignId: string; store: CampaignStore; policy: TargetPolicy }> {
  const targets = ids(prefix, count);
  await registerDevices(env.emqx, targets);
  await devices.connectAll(targets);
  const { campaignId, store } = await seedCampaign(prefix, targets, text);
  const defaults = CampaignRequest.parse({ targets: { list: [{ clientId: 'x' }] }, message: { topic: 't', payload: { format: 'text', text: 'x' } } });
  return { targets, campaignId, store, policy: { retry: defaults.retry, offline: defaults.offline } };
}

describe('campaign delivery', () => {
  it('delivers once to online devices, to returning devices on their reconnect signal, and ends the others offline at the deadline', async () => {
    const online = ids('on', 10);
    const late = ids('late', 5);
    const gone = ids('gone', 5);
    await registerDevices(env.emqx, [...online, ...late, ...gone]);
    await devices.connectAll(online);

    const targets = [...gone, ...online, ...late].map((clientId, i) => ({ clientId, values: { fw: `1.${i}` } }));
    const started = await env.ops.campaigns.start({
      targets: { list: targets },
      message: { topic: TOPIC, payload: { format: 'json', text: '{"cmd":"update","device":"${clientid}","fw":"${fw}"}' }, qos: 1 },
      // Rechecks are rare here, so a returning device is served by its reconnect signal.
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 3, wakeBackoffMs: 500 },
      deadlineMs: 12_000,
    });
    expect(started).toMatchObject({ workflowId: `campaign/${started.campaignId}`, total: 20, duplicates: 0 });

    // Everyone was tried once: the online devices have their message, the others wait.
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.waiting === 10, { what: 'offline targets waiting', timeoutMs: 10_000 });
    expect(devices.arrivals).toHaveLength(10);

    await devices.connectAll(late);
    const notifiedAt = Date.now();
    // Without the webhook adapter (this file runs none), a platform with its own presence source
    // tells the campaign: notifyDeviceOnline in the client library, or the wakeCampaignsForDevice
    // activity. campaign-presence.test.ts covers the device workflow's own connect path.
    const activities = createCampaignActivities({ emqx: env.emqx, history: env.history });
    const activityEnv = new MockActivityEnvironment({}, { client: env.temporal });
    for (const clientId of late.slice(0, 3)) {
      expect(await activityEnv.run(activities.wakeCampaignsForDevice, { clientId })).toEqual({ campaigns: [started.campaignId] });
    }
    for (const clientId of late.slice(3)) expect(await env.ops.campaigns.notifyDeviceOnline(clientId)).toEqual([started.campaignId]);
    expect(await activityEnv.run(activities.wakeCampaignsForDevice, { clientId: 'never-targeted' })).toEqual({ campaigns: [] });
    await waitFor(() => late.every((id) => devices.received(id).length > 0), { what: 'messages to returning devices', timeoutMs: 8_000 });
    expect(Math.max(...late.map((id) => (devices.received(id)[0]?.at ?? 0) - notifiedAt))).toBeLessThan(5_000);

    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 20, delivered: 15, offline: 5, failed: 0, pending: 0 } });

    for (const id of [...online, ...late]) {
      const received = devices.received(id);
      expect(received, id).toHaveLength(1);
      const target = targets.find((t) => t.clientId === id);
      expect(JSON.parse(received[0]?.payload ?? '{}')).toEqual({ cmd: 'update', device: id, fw: target?.values.fw });
    }
    expect(devices.arrivals.filter((a) => gone.some((id) => a.clientId === id))).toHaveLength(0);

    const records = await env.ops.campaigns.finalRecords(started.campaignId);
    expect(records).toHaveLength(20);
    expect(new Set(records.map((r) => r.clientId)).size).toBe(20);
    for (const r of records) {
      if (gone.includes(r.clientId)) expect(r).toMatchObject({ status: 'offline', lastError: expect.stringContaining('no matching subscribers') });
      else expect(r).toMatchObject({ status: 'delivered', messageId: expect.stringMatching(/^[0-9A-F]+$/) });
    }
    const rows = [];
    for await (const row of env.ops.campaigns.results(started.campaignId)) rows.push(row);
    expect(rows.map((r) => r.clientId)).toEqual(targets.map((t) => t.clientId));
    expect(rows.filter((r) => r.status === 'delivered')).toHaveLength(15);
    expect((await env.ops.campaigns.status(started.campaignId)).state).toBe('completed');
    // Its working states are gone (results above came from the final records) and so are its reconnect lookups.
    const store = new CampaignStore(env.history.db);
    expect(await store.chunkStates.countDocuments({ campaignId: started.campaignId })).toBe(0);
    expect(await store.waiting.countDocuments({ campaignId: started.campaignId })).toBe(0);
  });

  it('delivers once to a device whose persistent session is offline: EMQX queues it, and its return brings no second publish', async () => {
    const [away, here] = [uniqueName('persist-away'), uniqueName('persist-here')];
    await registerDevices(env.emqx, [away, here]);
    // The away device leaves its session behind (clean_session=false, subscribed), as devices on flaky links do.
    await devices.connect(away, undefined, 1, true);
    await devices.disconnect(away);
    await waitFor(async () => (await env.emqx.getClient(away))?.connected === false, { what: `${away} offline with its session` });
    await devices.connect(here);

    const started = await env.ops.campaigns.start({
      targets: { list: [away, here].map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'text', text: 'once ${clientid}' }, qos: 1 },
      offline: { wait: true, recheckIntervalMs: 1_000, wakeRetries: 3, wakeBackoffMs: 200 },
      deadlineMs: 8_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.delivered === 2, { what: 'both targets delivered' });
    expect(devices.received(away)).toHaveLength(0);
    expect((await env.emqx.getClient(away))?.mqueue_len).toBe(1);
    const records = Object.fromEntries((await env.ops.campaigns.finalRecords(started.campaignId)).map((r) => [r.clientId, r]));
    expect(records[away]).toMatchObject({ status: 'delivered', delivery: 'queued', attempts: 1 });
    expect(records[here]).toMatchObject({ status: 'delivered', delivery: 'connected', attempts: 1 });

    // The device returns: the queued message arrives; nothing waits for it, so its reconnect publishes nothing more.
    await devices.connect(away, undefined, 1, true);
    await waitFor(() => devices.received(away).length > 0, { what: 'the queued message at the returning device' });
    expect(await env.ops.campaigns.notifyDeviceOnline(away)).toEqual([]);
    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    expect(summary.counts).toMatchObject({ total: 2, delivered: 2, pending: 0 });
    expect(devices.received(away).map((a) => a.payload)).toEqual([`once ${away}`]);
    expect(devices.received(here).map((a) => a.payload)).toEqual([`once ${here}`]);
    await devices.disconnect(away);
  });

  it('does not count a target as delivered when only a "#" subscriber got its message', async () => {
    const [gone, here] = [uniqueName('hash-gone'), uniqueName('hash-here')];
    const monitor = uniqueName('monitor');
    await registerDevices(env.emqx, [gone, here, monitor]);
    await devices.connect(here);
    await devices.connect(monitor, '#', 0);

    const started = await env.ops.campaigns.start({
      targets: { list: [gone, here].map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'text', text: 'hash ${clientid}' }, qos: 1 },
    });
    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    // EMQX accepted both messages (the monitor matched each), yet only the device that is there had its own.
    expect(devices.received(monitor).map((a) => a.payload)).toEqual(expect.arrayContaining([`hash ${gone}`, `hash ${here}`]));
    expect(summary.counts).toMatchObject({ total: 2, delivered: 1, offline: 1, pending: 0 });
    const records = Object.fromEntries((await env.ops.campaigns.finalRecords(started.campaignId)).map((r) => [r.clientId, r]));
    expect(records[gone]).toMatchObject({ status: 'offline', lastError: expect.stringContaining('no matching subscribers') });
    expect(records[here]).toMatchObject({ status: 'delivered', delivery: 'connected' });
    await devices.disconnect(monitor);
  });

  it('retries waiting targets periodically until the deadline when no reconnect signal comes', async () => {
    const back = ids('poll', 4);
    await registerDevices(env.emqx, back);
    const started = await env.ops.campaigns.start({
      targets: { list: back.map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'text', text: 'hello ${clientid}' } },
      offline: { wait: true, recheckIntervalMs: 1_000 },
      deadlineMs: 20_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.waiting === 4, { what: 'targets waiting' });
    await devices.connectAll(back);
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).state === 'completed', { what: 'campaign completion', timeoutMs: 15_000 });
    for (const id of back) expect(devices.received(id).map((a) => a.payload)).toEqual([`hello ${id}`]);
    const status = await env.ops.campaigns.status(started.campaignId);
    expect(status.counts).toMatchObject({ total: 4, delivered: 4, pending: 0 });
    expect(status.retries).toBeGreaterThanOrEqual(4);
  });

  it('uses a campaign id once: a start that failed before its workflow started can be repeated after its lease, one under way or whose workflow started cannot', async () => {
    const targets = ids('reuse', 4);
    await registerDevices(env.emqx, targets);
    await devices.connectAll(targets);
    const store = new CampaignStore(env.history.db);
    const message = { topic: TOPIC, payload: { format: 'text' as const, text: 'reuse' } };

    // What a start that failed after storing leaves: the record (state `created`), chunks of
    // another list, even a final record (its workflow was terminated before recording its end).
    const failedId = uniqueName('failed-start');
    const stored = (createdAt: string) =>
      store.createCampaign(
        { campaignId: failedId, workflowId: `campaign/${failedId}`, state: 'created', active: true, transport: 'rest', waitOffline: false, createdAt, startAttempt: 'a1', targets: { source: 'list', total: 2, chunkCount: 1, chunkSize: 2 } },
        { topic: 'stale/${clientid}', payload: { format: 'text', text: 'stale' }, qos: 0, retain: false },
      );
    await stored(new Date().toISOString());
    await store.writeChunks(failedId, [{ clientId: 'stale-a' }, { clientId: targets[0] as string }], 2);
    await store.recordFinalTargets([finalRecord(failedId, targets[0] as string, { status: 'failed', attempts: 1, finishedAt: Date.now(), lastError: 'stale' })]);
    // Within its lease the id stays with that start (it may still be writing).
    await expect(env.ops.campaigns.start({ campaignId: failedId, targets: { list: targets.slice(0, 2).map((clientId) => ({ clientId })) }, message })).rejects.toThrow(
      /under way or failed less than 60 s ago/,
    );
    await store.campaigns.updateOne({ _id: failedId }, { $set: { createdAt: new Date(Date.now() - START_LEASE_MS - 1_000).toISOString() } });
    const repeated = await env.ops.campaigns.start({ campaignId: failedId, targets: { list: targets.slice(0, 2).map((clientId) => ({ clientId })) }, message });
    expect(await env.ops.campaigns.handle(repeated.campaignId).result()).toMatchObject({ state: 'completed', counts: { total: 2, delivered: 2 } });
    for (const id of targets.slice(0, 2)) expect(devices.received(id).map((a) => a.payload)).toEqual(['reuse']);
    const records = await env.ops.campaigns.finalRecords(failedId);
    expect(records.map((r) => r.clientId).sort()).toEqual(targets.slice(0, 2).sort());
    expect(records.every((r) => r.status === 'delivered')).toBe(true);

    // A finished campaign's id is taken.
    await expect(env.ops.campaigns.start({ campaignId: failedId, targets: { list: [{ clientId: targets[2] as string }] }, message })).rejects.toThrow(/exists already/);

    // A running one whose record still says `created` (its start did not get to mark it): taken too, and left alone.
    const running = await env.ops.campaigns.start({ campaignId: uniqueName('running'), targets: { list: targets.slice(2).map((clientId) => ({ clientId })) }, message, rollout: { maximumPerMinute: 60 } });
    await store.campaigns.updateOne({ _id: running.campaignId }, { $set: { state: 'created' } });
    await expect(env.ops.campaigns.start({ campaignId: running.campaignId, targets: { list: [{ clientId: 'someone-else' }] }, message })).rejects.toThrow(/exists already/);
    expect(await env.ops.campaigns.handle(running.campaignId).result()).toMatchObject({ state: 'completed', counts: { total: 2, delivered: 2 } });
    for (const id of targets.slice(2)) expect(devices.received(id).map((a) => a.payload)).toEqual(['reuse']);
    expect((await store.getCampaign(running.campaignId))?.state).toBe('completed');
  });

  it('stops publishing when another start took its campaign id over, and says so', async () => {
    const targets = ids('taken', 3);
    await registerDevices(env.emqx, targets);
    await devices.connectAll(targets);
    const store = new CampaignStore(env.history.db);
    const started = await env.ops.campaigns.start({
      targets: { list: targets.map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'text', text: 'taken' } },
      rollout: { maximumPerMinute: 60 },
    });
    await waitFor(() => devices.arrivals.some((a) => targets.includes(a.clientId)), { what: 'the first message' });
    // What a take-over by another start leaves in the record (see the test above for when one happens).
    await store.campaigns.updateOne({ _id: started.campaignId }, { $set: { startAttempt: 'another-start' } });
    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    expect(summary).toMatchObject({ state: 'aborted', reason: expect.stringMatching(/taken over by another start/) });
    expect(devices.arrivals.filter((a) => targets.includes(a.clientId)).length).toBeLessThan(3);
  });

  it('continues as new across runs, carrying progress, without publishing twice', async () => {
    const targets = ids('can', 30);
    await registerDevices(env.emqx, targets);
    await devices.connectAll(targets);
    const started = await env.ops.campaigns.start(
      { targets: { list: targets.map((clientId) => ({ clientId })) }, message: { topic: TOPIC, payload: { format: 'text', text: 'run' } }, rollout: { batchSize: 1, concurrency: 2 } },
      { batchesPerRun: 2 },
    );
    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    // Batches of BULK_REQUESTS_PER_BATCH requests of one target each: 30 targets take 8 batches.
    expect(summary).toMatchObject({ state: 'completed', batches: Math.ceil(30 / BULK_REQUESTS_PER_BATCH), counts: { delivered: 30, pending: 0 } });
    for (const id of targets) expect(devices.received(id), id).toHaveLength(1);
    // Every run replays deterministically against the current code.
    let runs = 0;
    let runId: string | undefined = started.runId;
    while (runId) {
      const history = await env.temporal.workflow.getHandle(started.workflowId, runId).fetchHistory();
      await Worker.runReplayHistory({ workflowsPath: workflowsPath(), dataConverter: createDataConverter(env.keys), replayName: `campaign-run-${runs}` }, history, started.workflowId);
      runs += 1;
      runId = history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    expect(runs).toBeGreaterThanOrEqual(3);
  });

  it('a batch sends bulk requests of the batch size and records progress after each; a retried batch never re-sends what was recorded', async () => {
    const { targets, campaignId, store, policy } = await connectedCampaign('req', 10, 'req');

    // EMQX answers the first two bulk requests, then fails in a way retrying cannot fix.
    const sizes: number[] = [];
    const run = batchRunner(
      campaignId,
      (messages, opts) => {
        sizes.push(messages.length);
        if (sizes.length === 3) return Promise.reject(new EmqxError('EMQX answered 401', { status: 401, code: 'BAD_API_KEY_OR_SECRET' }));
        return env.emqx.publishBulk(messages, opts);
      },
      policy,
      { limit: 10, requestSize: 4 },
    );
    await expect(run('batch-1')).rejects.toThrow(/401/);
    expect(sizes).toEqual([4, 4, 2]);
    // The retry of the same batch publishes nothing: it reports the two requests that were recorded.
    expect(await run('batch-1')).toMatchObject({ published: 8, delivered: 8, counts: { delivered: 8, pending: 2 }, nextDueAt: 0 });
    expect(sizes).toHaveLength(3);
    expect(await store.targetRecords(campaignId)).toHaveLength(8);
    // The next batch takes the two that are left.
    expect(await run('batch-2')).toMatchObject({ published: 2, delivered: 2, counts: { delivered: 10, pending: 0 }, nextDueAt: null });
    expect(sizes).toEqual([4, 4, 2, 2]);
    await waitFor(() => targets.every((id) => devices.received(id).length > 0), { what: 'every device reached' });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload), id).toEqual(['req']);
    expect(await store.targetRecords(campaignId)).toHaveLength(10);
  });

  it('a batch whose worker dies after EMQX answered applies that answer on retry: delivered, not an unknown outcome, and not sent again', async () => {
    const { targets, campaignId, store, policy } = await connectedCampaign('answered', 4, 'answered');
    let requests = 0;
    const run = batchRunner(
      campaignId,
      (messages, opts) => {
        requests += 1;
        return env.emqx.publishBulk(messages, opts);
      },
      policy,
      { limit: 4 },
    );
    // The first write after EMQX's answer fails as a dying worker's would: not an answer from EMQX.
    const recordFinals = vi.spyOn(CampaignStore.prototype, 'recordFinalTargets').mockRejectedValueOnce(new Error('worker stopped'));
    try {
      await expect(run('batch-1')).rejects.toThrow('worker stopped');
    } finally {
      recordFinals.mockRestore();
    }
    expect(requests).toBe(1);
    expect((await store.readChunkState(campaignId, 0)).sending).toMatchObject({ batch: 'batch-1', positions: [0, 1, 2, 3], answered: targets.map(() => ({ kind: 'delivered' })) });

    expect(await run('batch-1')).toMatchObject({ delivered: 4, counts: { delivered: 4, pending: 0 }, nextDueAt: null });
    expect(requests).toBe(1);
    const records = await store.targetRecords(campaignId);
    expect(records.map((r) => [r.clientId, r.status, r.attempts, r.lastError])).toEqual(targets.map((id) => [id, 'delivered', 1, undefined]));
    expect(records.every((r) => /^[0-9A-F]+$/.test(r.messageId ?? ''))).toBe(true);
    expect((await store.readChunkState(campaignId, 0)).sending).toBeUndefined();
    await waitFor(() => targets.every((id) => devices.received(id).length > 0), { what: 'every device reached' });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload), id).toEqual(['answered']);
  });

  it('tries a target again at once when its device subscribed between the "no subscriber" answer and its waiting record', async () => {
    // The device's wake-up reads the waiting records once its subscriptions are live; a device that
    // gets there before the campaign wrote its record is found by the campaign's own read of the
    // device's session after the write. The device connects inside that window here, every time.
    const [device] = ids(uniqueName('window'), 1) as [string];
    await registerDevices(env.emqx, [device]);
    const { campaignId, store } = await seedCampaign('window', [device], 'window', true);
    const request = CampaignRequest.parse({
      targets: { list: [{ clientId: 'x' }] },
      message: { topic: 't', payload: { format: 'text', text: 'x' } },
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 0 },
    });
    let reconnected = false;
    const run = batchRunner(
      campaignId,
      async (messages, opts) => {
        const answers = await env.emqx.publishBulk(messages, opts);
        if (!reconnected) {
          reconnected = true;
          await devices.connect(device);
        }
        return answers;
      },
      { retry: request.retry, offline: request.offline },
      { limit: 1 },
    );

    const first = await run('batch-1');
    expect(first).toMatchObject({ published: 1, delivered: 0, counts: { pending: 1, waiting: 1 } });
    // Due again now, not at the recheck ten minutes away; and its waiting record exists.
    expect(first.nextDueAt).toBeLessThanOrEqual(Date.now());
    expect(await store.waitingEntry(campaignId, device)).toMatchObject({ chunk: 0, index: 0 });
    expect(await run('batch-2')).toMatchObject({ published: 1, delivered: 1, counts: { delivered: 1, pending: 0 }, nextDueAt: null });
    await waitFor(() => devices.received(device).length > 0, { what: `${device} reached` });
    expect(devices.received(device).map((a) => a.payload)).toEqual(['window']);
    await devices.disconnect(device);
  });

  it('publishes over MQTT through the worker\'s publishing client when asked', async () => {
    const targets = ids('mqtt', 5);
    await registerDevices(env.emqx, [...targets, 'campaign-publisher']);
    await devices.connectAll(targets);
    const summary = await runMqttCampaign(4, 'campaign-publisher', {
      targets: { list: targets.map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'base64', data: Buffer.from('binary \u0001 payload').toString('base64') }, qos: 1 },
      transport: 'mqtt',
    });
    expect(summary.counts).toMatchObject({ delivered: 5, pending: 0 });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload)).toEqual(['binary \u0001 payload']);
  });

  // MQTT 5 against the dev broker, which acknowledges as EMQX does: PUBACK reason code 16 when no
  // subscription matches (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl
  // puback_reason_code/3), and the PUBLISH's properties passed on to MQTT 5 subscribers.
  it('publishes over MQTT 5: targets nobody subscribes for are told apart by PUBACK reason 16, and MQTT 5 devices get the message properties', async () => {
    const online = ids('mqtt5-on', 3);
    const absent = ids('mqtt5-off', 2);
    await registerDevices(env.emqx, [...online, ...absent, 'campaign-publisher-v5']);
    const received = new Map<string, IPublishPacket[]>();
    const clients = await Promise.all(
      online.map(async (clientId) => {
        const client = await connectAsync(env.broker.mqttUrl, { clientId, username: clientId, password: DEVICE_PASSWORD, protocolVersion: 5, reconnectPeriod: 0 });
        client.on('message', (_topic, _payload, packet) => received.set(clientId, [...(received.get(clientId) ?? []), packet]));
        await client.subscribeAsync(`campaign/${clientId}/cmd`, { qos: 1 });
        return client;
      }),
    );
    try {
      const summary = await runMqttCampaign(5, 'campaign-publisher-v5', {
        targets: { list: [...absent, ...online].map((clientId) => ({ clientId })) },
        message: {
          topic: TOPIC,
          payload: { format: 'text', text: 'update ${clientid}' },
          qos: 1,
          properties: { messageExpiryInterval: 600, userProperties: { campaign: 'mqtt5' }, responseTopic: 'campaign/${clientid}/answer', correlationData: 'corr-5' },
        },
        transport: 'mqtt',
        // The reason code alone tells: no session lookups confirming deliveries at the device.
        offline: { confirmAtDevice: false },
      });
      expect(summary.counts).toMatchObject({ total: 5, delivered: 3, offline: 2, pending: 0 });
      for (const clientId of online) {
        const [message, ...more] = received.get(clientId) ?? [];
        expect(more, clientId).toEqual([]);
        expect(message?.payload.toString()).toBe(`update ${clientId}`);
        expect(message?.properties?.userProperties).toEqual({ campaign: 'mqtt5' });
        expect(message?.properties?.responseTopic).toBe(`campaign/${clientId}/answer`);
        expect(message?.properties?.correlationData?.toString()).toBe('corr-5');
        expect(message?.properties?.messageExpiryInterval).toBeGreaterThan(0);
        expect(message?.properties?.messageExpiryInterval).toBeLessThanOrEqual(600);
      }
      const records = await env.ops.campaigns.finalRecords(summary.campaignId);
      for (const r of records) {
        if (absent.includes(r.clientId)) expect(r).toMatchObject({ status: 'offline', lastError: expect.stringContaining('no matching subscribers') });
        else expect(r).toMatchObject({ status: 'delivered' });
      }
    } finally {
      await Promise.all(clients.map((c) => c.endAsync()));
    }
  });
});

/**
 * Runs a campaign on a worker of its own whose MQTT publisher logs in as `publisherId` (a device
 * user) with the given protocol version; resolves with the campaign's summary and id.
 */
async function runMqttCampaign(protocolVersion: 4 | 5, publisherId: string, request: Parameters<DeviceOpsTestEnv['ops']['campaigns']['start']>[0]) {
  const publisher = MqttPublisher.start({ url: env.broker.mqttUrl, clientId: publisherId, username: publisherId, password: DEVICE_PASSWORD, protocolVersion });
  await publisher.waitConnected();
  const connection = await workerConnection();
  const taskQueue = uniqueName('campaign-mqtt');
  const worker = await createDeviceOpsWorker({
    connection,
    namespace: stackEndpoints().namespace,
    taskQueue,
    deps: { emqx: env.emqx, history: env.history, mqttPublisher: publisher },
    dataConverter: createDataConverter(env.keys),
  });
  const running = worker.run();
  try {
    const started = await env.ops.campaigns.start(request, { taskQueue });
    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    return { ...summary, campaignId: started.campaignId };
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
    await publisher.close();
  }
}
