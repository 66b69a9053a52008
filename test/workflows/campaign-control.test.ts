import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CampaignControlError } from '../../src/starter/client/campaigns';
import { waitFor } from '../harness';
import { ids, observe, registerDevices, TestDevices, type Arrival } from '../support/campaign-devices';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;
let devices: TestDevices;

/**
 * One subscriber per test on `<prefix>/+/cmd` stands in for the fleet: every target's topic reaches
 * it. Its campaigns trust EMQX's answer (`STAND_IN`), as the targets themselves have no sessions.
 */
async function monitor(prefix: string): Promise<{ arrivals: () => Arrival[]; topicOf: (id: string) => string }> {
  const name = `${prefix}-monitor`;
  await registerDevices(env.emqx, [name]);
  await devices.connect(name, `${prefix}/+/cmd`);
  return { arrivals: () => devices.received(name), topicOf: (id) => `${prefix}/${id}/cmd` };
}

const STAND_IN = { confirmAtDevice: false };

function byTopic(arrivals: Arrival[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of arrivals) counts.set(a.topic, (counts.get(a.topic) ?? 0) + 1);
  return counts;
}


beforeAll(async () => {
  env = await startDeviceOpsEnv();
  devices = new TestDevices(env.broker);
});

afterAll(async () => {
  await devices?.disconnectAll();
  await env?.close();
});

describe('campaign control', () => {
  it('respects the rollout rate (measured arrival times)', async () => {
    const m = await monitor('rate');
    const targets = ids('rate', 40).map((clientId) => ({ clientId }));
    const { campaignId } = await env.ops.campaigns.start({
      targets: { list: targets },
      offline: STAND_IN,
      message: { topic: 'rate/${clientid}/cmd', payload: { format: 'text', text: 'go' } },
      rollout: { maximumPerMinute: 300 },
    });
    const summary = await env.ops.campaigns.handle(campaignId).result();
    expect(summary.counts).toMatchObject({ delivered: 40, pending: 0 });
    const times = m.arrivals().map((a) => a.at).sort((a, b) => a - b);
    expect(times).toHaveLength(40);
    // 300/min = 5/s, in batches of about a second's worth: 40 messages take at least ~7 s...
    const span = (times.at(-1) as number) - (times[0] as number);
    expect(span).toBeGreaterThanOrEqual(((40 - 5) / 5) * 1000 * 0.9);
    expect(span).toBeLessThan(20_000);
    // ...and no 2-second window holds more than 2 s worth plus one batch.
    for (const start of times) expect(times.filter((t) => t >= start && t < start + 2_000).length).toBeLessThanOrEqual(15);
    expect(summary.rateLimitPerMinute).toBe(300);
  });

  it('ramps the rate up exponentially after each step of deliveries, to the maximum', async () => {
    const m = await monitor('ramp');
    const targets = ids('ramp', 40).map((clientId) => ({ clientId }));
    const { campaignId } = await env.ops.campaigns.start({
      targets: { list: targets },
      offline: STAND_IN,
      message: { topic: 'ramp/${clientid}/cmd', payload: { format: 'text', text: 'go' } },
      rollout: { maximumPerMinute: 600, exponentialRate: { baseRatePerMinute: 60, incrementFactor: 2, numberOfSucceededTargets: 5 } },
    });
    const summary = await env.ops.campaigns.handle(campaignId).result();
    expect(summary).toMatchObject({ counts: { delivered: 40 }, rateLimitPerMinute: 600 });
    const times = m.arrivals().map((a) => a.at).sort((a, b) => a - b);
    // 60/min for the first five (one a second), then 120, 240, 480 and the 600 cap.
    expect((times[4] as number) - (times[0] as number)).toBeGreaterThanOrEqual(3_500);
    expect((times[39] as number) - (times[20] as number)).toBeLessThan(4_000);
  });

  it('holds publishing while paused and continues on resume', async () => {
    const m = await monitor('pause');
    const targets = ids('pause', 60).map((clientId) => ({ clientId }));
    const { campaignId } = await env.ops.campaigns.start({
      targets: { list: targets },
      offline: STAND_IN,
      message: { topic: 'pause/${clientid}/cmd', payload: { format: 'text', text: 'x' } },
      rollout: { maximumPerMinute: 600 },
    });
    await waitFor(() => m.arrivals().length >= 10, { what: 'first messages' });
    const paused = await env.ops.campaigns.pause(campaignId);
    const pausedAt = Date.now();
    expect(paused.state).toBe('paused');
    await expect(env.ops.campaigns.pause(campaignId)).rejects.toThrow(CampaignControlError);
    await expect(env.ops.campaigns.pause(campaignId)).rejects.toThrow(/already paused/);

    // A message published before the pause answered may still be in flight to the subscriber; on a
    // loaded machine that takes a while, so only arrivals after the settle time count against the pause.
    const settle = 1_500;
    await observe(4_000, async () => {
      const status = await env.ops.campaigns.status(campaignId);
      expect(status.state).toBe('paused');
    });
    const resumedAt = Date.now();
    expect(m.arrivals().filter((a) => a.at > pausedAt + settle && a.at < resumedAt)).toEqual([]);
    expect(m.arrivals().filter((a) => a.at <= pausedAt + settle).length).toBeLessThan(60);

    expect((await env.ops.campaigns.resume(campaignId)).state).toBe('running');
    await expect(env.ops.campaigns.resume(campaignId)).rejects.toThrow(/not paused/);
    const summary = await env.ops.campaigns.handle(campaignId).result();
    expect(summary.counts).toMatchObject({ delivered: 60, pending: 0 });
    expect([...byTopic(m.arrivals()).values()].every((n) => n === 1)).toBe(true);
    expect(byTopic(m.arrivals()).size).toBe(60);
  });

  it('collects reconnect signals while paused without waking (no timer per signal), and serves those devices on resume', async () => {
    const targets = ids('pause-wake', 3);
    await registerDevices(env.emqx, targets);
    const { campaignId, workflowId } = await env.ops.campaigns.start({
      targets: { list: targets.map((clientId) => ({ clientId })) },
      message: { topic: 'pause-wake/${clientid}/cmd', payload: { format: 'text', text: 'back' } },
      offline: { wait: true, recheckIntervalMs: 600_000, wakeRetries: 2, wakeBackoffMs: 300 },
      deadlineMs: 120_000,
    });
    await waitFor(async () => (await env.ops.campaigns.status(campaignId)).counts.waiting === 3, { what: 'targets waiting' });
    await env.ops.campaigns.pause(campaignId);
    await devices.connectAll(targets, (id) => `pause-wake/${id}/cmd`);
    for (let round = 0; round < 5; round++) for (const id of targets) expect(await env.ops.campaigns.notifyDeviceOnline(id)).toEqual([campaignId]);
    await observe(1_000, () => {
      for (const id of targets) expect(devices.received(id)).toEqual([]);
    });

    const resumedAt = Date.now();
    await env.ops.campaigns.resume(campaignId);
    await waitFor(() => targets.every((id) => devices.received(id).length > 0), { what: 'messages after resume', timeoutMs: 10_000 });
    expect(Math.max(...targets.map((id) => (devices.received(id)[0]?.at ?? 0) - resumedAt))).toBeLessThan(5_000);
    expect(await env.ops.campaigns.handle(campaignId).result()).toMatchObject({ state: 'completed', counts: { delivered: 3 } });

    // Between the pause and the resume: 15 signals, one timer (the deadline), not one per signal.
    const events = (await env.temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const updateAt = (name: string): number =>
      events.findIndex((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === name);
    const between = events.slice(updateAt('pauseCampaign'), updateAt('resumeCampaign'));
    expect(between.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'deviceOnline')).toHaveLength(15);
    expect(between.filter((e) => e.timerStartedEventAttributes).length).toBeLessThanOrEqual(1);
  });

  it('cancels with a reason: publishing stops, open targets end cancelled', async () => {
    const m = await monitor('cancel');
    const targets = ids('cancel', 100).map((clientId) => ({ clientId }));
    const { campaignId } = await env.ops.campaigns.start({
      targets: { list: targets },
      offline: STAND_IN,
      message: { topic: 'cancel/${clientid}/cmd', payload: { format: 'text', text: 'x' } },
      rollout: { maximumPerMinute: 600 },
    });
    await waitFor(() => m.arrivals().length >= 10, { what: 'first messages' });
    await expect(env.ops.campaigns.cancel(campaignId, '  ')).rejects.toThrow(/needs a reason/);
    const cancelled = await env.ops.campaigns.cancel(campaignId, 'wrong firmware selected');
    const cancelledAt = Date.now();
    expect(cancelled).toMatchObject({ state: 'cancelled', reason: 'wrong firmware selected' });
    expect(cancelled.counts.cancelled).toBeGreaterThan(0);
    expect(cancelled.counts.delivered + cancelled.counts.cancelled).toBe(100);
    const delivered = cancelled.counts.delivered;

    await observe(1_500, () => Promise.resolve());
    expect(m.arrivals().filter((a) => a.at > cancelledAt + 300)).toEqual([]);
    expect(m.arrivals()).toHaveLength(delivered);
    const records = await env.ops.campaigns.finalRecords(campaignId);
    expect(records).toHaveLength(100);
    expect(records.filter((r) => r.status === 'cancelled').every((r) => r.lastError === 'wrong firmware selected')).toBe(true);
    expect(await env.ops.campaigns.status(campaignId)).toMatchObject({ state: 'cancelled', reason: 'wrong firmware selected' });
    await expect(env.ops.campaigns.cancel(campaignId, 'again')).rejects.toThrow(/not running/);
  });

  it('aborts the rollout when the failure threshold is met', async () => {
    const m = await monitor('abort');
    // The first 20 targets have nobody subscribed; the last 20 would reach the monitor.
    const offline = ids('abort-off', 20).map((clientId) => ({ clientId, values: { p: 'nobody' } }));
    const online = ids('abort-on', 20).map((clientId) => ({ clientId, values: { p: 'abort' } }));
    const { campaignId } = await env.ops.campaigns.start({
      targets: { list: [...offline, ...online] },
      offline: STAND_IN,
      message: { topic: '${p}/${clientid}/cmd', payload: { format: 'text', text: 'x' } },
      rollout: { maximumPerMinute: 600 },
      abort: [{ failureType: 'offline', minExecuted: 10, thresholdPercent: 50 }],
    });
    const summary = await env.ops.campaigns.handle(campaignId).result();
    expect(summary.state).toBe('aborted');
    expect(summary.reason).toMatch(/abort criterion met: \d+ of \d+ executed targets ended offline/);
    expect(summary.counts.offline).toBeGreaterThanOrEqual(10);
    expect(summary.counts.cancelled).toBeGreaterThanOrEqual(20);
    expect(summary.counts.delivered).toBe(0);
    expect(m.arrivals()).toEqual([]);
    expect(await env.ops.campaigns.finalRecords(campaignId)).toHaveLength(40);
  });

  it('completes under 20% injected 503s, counting the retries, each target reached once', async () => {
    const m = await monitor('fault');
    // 40 bulk requests: the chance that none draws a 503 is 0.8^40, about 1 in 7,500.
    const targets = ids('fault', 400).map((clientId) => ({ clientId }));
    env.broker.faults.set({ restFailureRate: 0.2 });
    try {
      const { campaignId } = await env.ops.campaigns.start({
        targets: { list: targets },
        offline: STAND_IN,
        message: { topic: 'fault/${clientid}/cmd', payload: { format: 'text', text: 'x' } },
        rollout: { batchSize: 10 },
        retry: { transient: { retries: 10, backoffMs: 100 } },
      });
      const summary = await env.ops.campaigns.handle(campaignId).result();
      expect(summary).toMatchObject({ state: 'completed', counts: { delivered: 400, failed: 0, pending: 0 } });
      expect(summary.transientErrors).toBeGreaterThan(0);
      expect(summary.retries).toBe(summary.transientErrors);
      const records = await env.ops.campaigns.finalRecords(campaignId);
      expect(records.filter((r) => r.attempts > 1).length).toBeGreaterThan(0);
    } finally {
      env.broker.faults.reset();
    }
    // An injected 503 answers before anything is published, so no target got two messages.
    expect(byTopic(m.arrivals()).size).toBe(400);
    expect([...byTopic(m.arrivals()).values()].every((n) => n === 1)).toBe(true);
  });
});
