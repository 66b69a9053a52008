import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presenceWorkflowId } from '../../src/domain/presence';
import { waitFor } from '../harness';
import { ids, observe, registerDevices, TestDevices } from '../support/campaign-devices';
import { recordDevices, startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * Deliver-on-reconnect through the presence path, end to end: a device connects, the broker's
 * webhook reaches the adapter, which finds the campaigns waiting for the device and hands them to
 * the device workflow with the connect; the workflow sees the device online and signals them, and
 * the campaign publishes at once. The campaign's own recheck is ten minutes away, so only this path
 * can deliver in time.
 */

let env: PresenceTestEnv;
let devices: TestDevices;

beforeAll(async () => {
  env = await startPresenceEnv();
  devices = new TestDevices(env.broker);
});

afterAll(async () => {
  await devices?.disconnectAll();
  await env?.close();
});

async function signalsToCampaign(clientId: string, campaignWorkflowId: string): Promise<number> {
  const history = await env.temporal.workflow.getHandle(presenceWorkflowId(clientId)).fetchHistory();
  return (history.events ?? []).filter((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes?.workflowExecution?.workflowId === campaignWorkflowId).length;
}

describe('campaign delivery through the presence path', () => {
  it('delivers to devices when they connect, via their device workflows; a device online without the subscription waits for its next connect', async () => {
    const online = ids('pp-on', 3);
    const late = ids('pp-late', 4);
    const gone = ids('pp-gone', 2);
    const [mute] = ids('pp-mute', 1) as [string];
    await registerDevices(env.emqx, [...online, ...late, ...gone, mute]);
    await recordDevices(env.history, [...online, ...late, ...gone, mute]);
    await devices.connectAll(online);
    // Connected, but subscribed to something else: the campaign finds no subscriber for it.
    await devices.connect(mute, 'elsewhere/#');
    await waitFor(async () => (await env.ops.presenceOf(mute))?.presence === 'online', { what: `${mute} online in its device workflow` });

    const started = await env.ops.campaigns.start({
      targets: { list: [...online, ...late, ...gone, mute].map((clientId) => ({ clientId })) },
      message: { topic: 'campaign/${clientid}/cmd', payload: { format: 'text', text: 'hello ${clientid}' }, qos: 1 },
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 2, wakeBackoffMs: 300 },
      deadlineMs: 15_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.waiting === 7, { what: 'missing targets waiting', timeoutMs: 10_000 });

    await devices.connectAll(late);
    const connectedAt = Date.now();
    await waitFor(() => late.every((id) => devices.received(id).length > 0), { what: 'messages to returning devices', timeoutMs: 10_000 });
    expect(Math.max(...late.map((id) => (devices.received(id)[0]?.at ?? 0) - connectedAt))).toBeLessThan(8_000);
    for (const id of late) expect(await signalsToCampaign(id, started.workflowId), id).toBe(1);
    // The device online without the subscription was tried, once more at once (it is connected:
    // the campaign reads the sessions of targets that begin waiting), and waits: its connect came
    // before the campaign, so nothing has told the campaign about it.
    expect(await signalsToCampaign(mute, started.workflowId)).toBe(0);
    expect(devices.received(mute)).toHaveLength(0);

    // It reconnects, subscribed this time (taking over its old session): that connect reaches it.
    await devices.connect(mute);
    await waitFor(() => devices.received(mute).length > 0, { what: `message to ${mute} after its reconnect`, timeoutMs: 10_000 });
    expect(await signalsToCampaign(mute, started.workflowId)).toBe(1);

    const summary = await env.ops.campaigns.handle(started.campaignId).result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 10, delivered: 8, offline: 2, pending: 0 } });
    for (const id of [...online, ...late, mute]) expect(devices.received(id).map((a) => a.payload), id).toEqual([`hello ${id}`]);
    const records = await env.ops.campaigns.finalRecords(started.campaignId);
    expect(records.find((r) => r.clientId === mute)).toMatchObject({ status: 'delivered', attempts: 3 });
    for (const id of gone) expect(records.find((r) => r.clientId === id)).toMatchObject({ status: 'offline', attempts: 1 });
  });

  it('a connect whose webhook EMQX dropped: reconciliation finds the device online and brings it its waiting campaigns', async () => {
    const [dropped] = ids('pp-dropped', 1) as [string];
    await registerDevices(env.emqx, [dropped]);
    await recordDevices(env.history, [dropped]);
    const started = await env.ops.campaigns.start({
      targets: { list: [{ clientId: dropped }] },
      message: { topic: 'campaign/${clientid}/cmd', payload: { format: 'text', text: 'late ${clientid}' }, qos: 1 },
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 2, wakeBackoffMs: 300 },
      deadlineMs: 60_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(started.campaignId)).counts.waiting === 1, { what: 'the target waiting' });

    const droppedSoFar = (): number => env.broker.webhookMetrics()['http:device_ops']?.['dropped.other'] ?? 0;
    const before = droppedSoFar();
    env.broker.faults.set({ webhookDropRate: 1 });
    try {
      await devices.connect(dropped);
      // The connect's webhook is queued after CONNACK: keep dropping until it was.
      await waitFor(() => droppedSoFar() > before, { what: 'the connect webhook dropped' });
    } finally {
      env.broker.faults.reset();
    }
    // Nothing told the campaign: its recheck is ten minutes away.
    await observe(1_500, () => expect(devices.received(dropped)).toHaveLength(0));

    const reconciledAt = Date.now();
    const report = await env.ops.reconcilePresence();
    expect(report.markedOnline).toBeGreaterThanOrEqual(1);
    await waitFor(() => devices.received(dropped).length > 0, { what: `message to ${dropped} after reconciliation`, timeoutMs: 10_000 });
    expect((devices.received(dropped)[0]?.at ?? 0) - reconciledAt).toBeLessThan(8_000);
    expect(await signalsToCampaign(dropped, started.workflowId)).toBe(1);
    expect(await env.ops.campaigns.handle(started.campaignId).result()).toMatchObject({ state: 'completed', counts: { total: 1, delivered: 1 } });
    expect(devices.received(dropped).map((a) => a.payload)).toEqual([`late ${dropped}`]);
  });
});
