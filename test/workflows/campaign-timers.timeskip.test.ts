import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CampaignSettings, Rollout, ScheduleSettings } from '../../src/domain/schemas/campaign';
import { CampaignRequest } from '../../src/domain/schemas/campaign';
import { emptyCounts, type ChunkReport } from '../../src/domain/campaign';
import { campaignProgressQuery, deviceOnlineSignal, pauseCampaignUpdate, resumeCampaignUpdate } from '../../src/contracts/campaign';
import { runCampaign } from '../../src/workflows/campaign';
import { uniqueName, waitFor } from '../harness';
import { startTimeSkipping, type TimeSkippingEnv } from '../support/time-skipping';

/**
 * The campaign workflow's timers (src/workflows/campaign.ts) on the time-skipping test server:
 * rollout rate and its exponential ramp, deadline, rechecks of waiting targets and pause/resume, in minutes of workflow time
 * that pass in milliseconds. The publishing activities are a fake fleet: a target is delivered when
 * its device is online at the (test server's) time of the batch, else it waits for the recheck
 * interval, as src/domain/campaign-target-state.ts decides for `offline.wait`. The end-to-end runs
 * on the real stack are in campaign-delivery.test.ts and campaign-presence.test.ts.
 */

type Status = 'pending' | 'waiting' | 'delivered' | 'offline' | 'cancelled';

interface FakeCampaign {
  chunkSize: number;
  targets: { clientId: string; status: Status; nextAt: number }[];
  recheckMs: number;
  /** When each device comes online (absent: never). */
  onlineFrom: Map<string, number>;
}

const campaigns = new Map<string, FakeCampaign>();

function report(campaign: FakeCampaign, chunk: number, published: number, delivered: number): ChunkReport {
  const targets = campaign.targets.slice(chunk * campaign.chunkSize, (chunk + 1) * campaign.chunkSize);
  const counts = emptyCounts(targets.length);
  for (const t of targets) {
    if (t.status === 'delivered') counts.delivered++;
    if (t.status === 'offline') counts.offline++;
    if (t.status === 'cancelled') counts.cancelled++;
    if (t.status === 'waiting') counts.waiting++;
  }
  counts.pending = targets.length - counts.delivered - counts.offline - counts.cancelled;
  const open = targets.filter((t) => t.status === 'pending' || t.status === 'waiting').map((t) => t.nextAt);
  const attempted = targets.filter((t) => t.status !== 'pending').length;
  return { chunk, counts, nextDueAt: open.length ? Math.min(...open) : null, published, delivered, attempted, attempts: attempted, transientErrors: 0 };
}

let ts: TimeSkippingEnv;

beforeAll(async () => {
  ts = await startTimeSkipping({
    publishCampaignBatch: (input, now) => {
      const campaign = campaigns.get(input.campaignId) as FakeCampaign;
      const from = input.chunk * campaign.chunkSize;
      const chunk = campaign.targets.slice(from, from + campaign.chunkSize);
      const woken = new Set(input.wake ?? []);
      const due = chunk.filter((t, i) => (t.status === 'pending' || t.status === 'waiting') && (t.nextAt <= now || woken.has(i))).slice(0, input.limit);
      let delivered = 0;
      for (const target of due) {
        const online = (campaign.onlineFrom.get(target.clientId) ?? Infinity) <= now;
        if (online) delivered++;
        Object.assign(target, online ? { status: 'delivered' } : { status: 'waiting', nextAt: now + campaign.recheckMs });
      }
      return report(campaign, input.chunk, due.length, delivered);
    },
    finishCampaignChunks: (input) => {
      const campaign = campaigns.get(input.campaignId) as FakeCampaign;
      return input.chunks.map((chunk) => {
        for (const t of campaign.targets.slice(chunk * campaign.chunkSize, (chunk + 1) * campaign.chunkSize)) {
          if (t.status === 'pending' || t.status === 'waiting') t.status = input.ending === 'expire' ? 'offline' : 'cancelled';
        }
        return report(campaign, chunk, 0, 0);
      });
    },
    locateWaitingTargets: (input) => {
      const campaign = campaigns.get(input.campaignId) as FakeCampaign;
      return campaign.targets.flatMap((t, position) =>
        t.status === 'waiting' && input.clientIds.includes(t.clientId)
          ? [{ campaignId: input.campaignId, clientId: t.clientId, chunk: Math.floor(position / campaign.chunkSize), index: position % campaign.chunkSize }]
          : [],
      );
    },
    recordCampaignState: () => undefined,
  });
});

afterAll(async () => {
  await ts?.close();
});

/** A campaign of `total` targets `d0`... in chunks of `chunkSize`, with the request's defaults for everything not given. */
function campaign(options: {
  total: number;
  chunkSize: number;
  rollout?: Partial<Rollout>;
  deadlineMs?: number;
  recheckMs?: number;
  onlineFrom?: Record<number, number>;
  schedule?: ScheduleSettings;
}) {
  const campaignId = uniqueName('camp');
  const request = CampaignRequest.parse({
    targets: { list: [{ clientId: 'x' }] },
    message: { topic: 't', payload: { format: 'text', text: 'p' } },
    rollout: { batchSize: 500, concurrency: 4, ...options.rollout },
    offline: { wait: true, recheckIntervalMs: options.recheckMs ?? 60_000 },
    ...(options.deadlineMs ? { deadlineMs: options.deadlineMs } : {}),
  });
  const settings: CampaignSettings = {
    campaignId,
    transport: 'rest',
    rollout: request.rollout,
    policy: { retry: request.retry, offline: request.offline },
    abort: [],
    ...(options.deadlineMs ? { deadlineMs: options.deadlineMs } : {}),
    ...(options.schedule ? { schedule: options.schedule } : {}),
  };
  const fake: FakeCampaign = {
    chunkSize: options.chunkSize,
    targets: Array.from({ length: options.total }, (_, i) => ({ clientId: `d${i}`, status: 'pending', nextAt: 0 })),
    recheckMs: request.offline.recheckIntervalMs,
    onlineFrom: new Map(Object.entries(options.onlineFrom ?? {}).map(([i, at]) => [`d${i}`, at])),
  };
  campaigns.set(campaignId, fake);
  const input = { settings, targets: { total: options.total, chunkCount: Math.ceil(options.total / options.chunkSize), chunkSize: options.chunkSize } };
  const publishTimes = (): number[] => ts.callsOf('publishCampaignBatch').filter((c) => c.input.campaignId === campaignId).map((c) => c.at);
  return { campaignId, input, fake, publishTimes, workflowId: `campaign/${campaignId}` };
}

const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - (times[i] as number));

describe('campaign timers on the time-skipping server', () => {
  it('publishes at maximumPerMinute, spaced in workflow time, across chunks and concurrency', async () => {
    // 6 a minute: one target per batch (ceil(6 / 60)), one batch every 10 s, although 2 chunks could run at once.
    const c = campaign({ total: 5, chunkSize: 3, rollout: { maximumPerMinute: 6, concurrency: 2 }, onlineFrom: { 0: 0, 1: 0, 2: 0, 3: 0, 4: 0 } });
    const result = await ts.env.client.workflow.execute(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });

    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ total: 5, delivered: 5, pending: 0 });
    expect(ts.callsOf('publishCampaignBatch').filter((call) => call.input.campaignId === c.campaignId).map((call) => call.input.limit)).toEqual([1, 1, 1, 1, 1]);
    // The workflow reserves each slot at its task's start; the recorded time is when the task
    // completed, a few real milliseconds later (the test server's clock runs between skips).
    const times = c.publishTimes();
    for (const gap of gaps(times)) {
      expect(gap).toBeGreaterThan(9_000);
      expect(gap).toBeLessThan(11_000);
    }
    expect((times[4] as number) - (times[0] as number)).toBeGreaterThanOrEqual(39_000);
  });

  it('ramps the rate exponentially: the gap between batches halves after each step of deliveries, down to the maximum rate', async () => {
    // 6 a minute, doubled after every 2 delivered, at most 24 a minute: gaps of 10 s, then 5 s, then 2.5 s.
    const c = campaign({
      total: 7,
      chunkSize: 7,
      rollout: { maximumPerMinute: 24, exponentialRate: { baseRatePerMinute: 6, incrementFactor: 2, numberOfSucceededTargets: 2 } },
      onlineFrom: Object.fromEntries(Array.from({ length: 7 }, (_, i) => [i, 0])),
    });
    const result = await ts.env.client.workflow.execute(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });

    expect(result).toMatchObject({ state: 'completed', rateLimitPerMinute: 24, counts: { delivered: 7 } });
    // A slot is reserved at the rate of the moment its batch starts, so a new rate shows one batch
    // later; recorded times are when a task completed, a few real milliseconds off.
    const expected = [10_000, 10_000, 5_000, 5_000, 2_500, 2_500];
    const measured = gaps(c.publishTimes());
    expect(measured).toHaveLength(expected.length);
    measured.forEach((gap, i) => {
      expect(gap, `gap ${i}`).toBeGreaterThan((expected[i] as number) - 500);
      expect(gap, `gap ${i}`).toBeLessThan((expected[i] as number) + 500);
    });
  });

  it('rechecks a waiting target at the recheck interval until its device is online', async () => {
    const start = await ts.env.currentTimeMs();
    const c = campaign({ total: 1, chunkSize: 1, recheckMs: 30_000, onlineFrom: { 0: start + 100_000 } });
    const result = await ts.env.client.workflow.execute(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });

    expect(result.counts).toMatchObject({ total: 1, delivered: 1, waiting: 0 });
    const times = c.publishTimes();
    // Tried at once, then every 30 s: the try at 120 s is the first after the device came online at 100 s.
    expect(times).toHaveLength(5);
    for (const gap of gaps(times)) {
      expect(gap).toBeGreaterThanOrEqual(30_000);
      expect(gap).toBeLessThan(31_000);
    }
    expect((times[4] as number) - start).toBeGreaterThanOrEqual(100_000);
  });

  it('a deviceOnline signal tries the waiting target at once, not at the next recheck', async () => {
    const start = await ts.env.currentTimeMs();
    const c = campaign({ total: 2, chunkSize: 2, recheckMs: 600_000, onlineFrom: { 0: start, 1: start + 60_000 } });
    const handle = await ts.env.client.workflow.start(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });
    await ts.env.sleep(60_000);
    expect(await handle.query(campaignProgressQuery)).toMatchObject({ counts: { delivered: 1, waiting: 1 } });

    await handle.signal(deviceOnlineSignal, 'd1');
    const result = await handle.result();
    expect(result.counts).toMatchObject({ delivered: 2, waiting: 0, pending: 0 });
    expect(ts.callsOf('locateWaitingTargets').filter((call) => call.input.campaignId === c.campaignId).map((call) => call.input.clientIds)).toEqual([['d1']]);
    const batches = ts.callsOf('publishCampaignBatch').filter((call) => call.input.campaignId === c.campaignId);
    expect(batches.map((call) => call.input.wake)).toEqual([undefined, [1]]);
    // Well before the 10-minute recheck.
    expect((batches[1]?.at as number) - start).toBeLessThan(70_000);
  });

  it('ends targets still waiting at the deadline as offline', async () => {
    const c = campaign({ total: 3, chunkSize: 3, deadlineMs: 300_000, recheckMs: 60_000, onlineFrom: { 0: 0 } });
    const handle = await ts.env.client.workflow.start(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });
    const startedAt = (await handle.describe()).startTime.getTime();

    await ts.env.sleep(240_000);
    const before = await handle.query(campaignProgressQuery);
    expect(before).toMatchObject({ state: 'running', counts: { delivered: 1, waiting: 2, pending: 2 } });
    expect(ts.callsOf('finishCampaignChunks').filter((call) => call.input.campaignId === c.campaignId)).toEqual([]);

    const result = await handle.result();
    expect(result.state).toBe('completed');
    expect(result.counts).toMatchObject({ total: 3, delivered: 1, offline: 2, pending: 0, waiting: 0 });
    const finish = ts.callsOf('finishCampaignChunks').filter((call) => call.input.campaignId === c.campaignId);
    expect(finish.map((call) => [call.input.ending, call.input.reason])).toEqual([['expire', 'the campaign deadline passed']]);
    expect((finish[0]?.at as number) - startedAt).toBeGreaterThanOrEqual(300_000);
    expect((finish[0]?.at as number) - startedAt).toBeLessThan(301_000);
    // Rechecks every minute until the deadline, none after it.
    expect(c.publishTimes().length).toBe(5);
    expect(ts.callsOf('recordCampaignState').filter((call) => call.input.campaignId === c.campaignId).map((call) => call.input.state)).toEqual(['completed']);
  });

  it('a pause holds publishing across any stretch of time; resume goes on at the rate', async () => {
    const c = campaign({ total: 4, chunkSize: 4, rollout: { maximumPerMinute: 6 }, onlineFrom: { 0: 0, 1: 0, 2: 0, 3: 0 } });
    const handle = await ts.env.client.workflow.start(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });
    await ts.env.sleep(15_000);
    expect(c.publishTimes()).toHaveLength(2);

    const paused = await handle.executeUpdate(pauseCampaignUpdate);
    expect(paused.state).toBe('paused');
    const pausedAt = await ts.env.currentTimeMs();
    await ts.env.sleep(3_600_000);
    expect(c.publishTimes()).toHaveLength(2);
    expect(await handle.query(campaignProgressQuery)).toMatchObject({ state: 'paused', counts: { delivered: 2, pending: 2 } });

    const resumed = await handle.executeUpdate(resumeCampaignUpdate);
    expect(resumed.state).toBe('running');
    const result = await handle.result();
    expect(result.counts).toMatchObject({ delivered: 4, pending: 0 });
    const times = c.publishTimes();
    expect(times).toHaveLength(4);
    expect((times[2] as number) - pausedAt).toBeGreaterThanOrEqual(3_600_000);
    expect((times[3] as number) - (times[2] as number)).toBeGreaterThan(9_000);
    expect((times[3] as number) - (times[2] as number)).toBeLessThan(11_000);
  });

  describe('scheduling', () => {
    const TEN_MINUTES = 600_000;
    // Open for one minute every ten (minute 0, 10, 20... of each hour, UTC).
    const window = '*/10 * * * * 1m';
    const iso = (t: number): string => new Date(t).toISOString();
    /** The second ten-minute mark from now: a start time before which the workflow is surely running. */
    const markAfterNext = async (): Promise<number> => (Math.floor((await ts.env.currentTimeMs()) / TEN_MINUTES) + 2) * TEN_MINUTES;

    it('waits for its start time, publishes only while the window is open, waits while it is closed and goes on when the next opens', async () => {
      const startAt = await markAfterNext();
      // 6 a minute: one target per batch every 10 s, so a one-minute window takes 6 of the 10.
      const c = campaign({
        total: 10,
        chunkSize: 10,
        rollout: { maximumPerMinute: 6 },
        onlineFrom: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [i, 0])),
        schedule: { startAt, windows: [window] },
      });
      const handle = await ts.env.client.workflow.start(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });
      expect(await handle.query(campaignProgressQuery)).toMatchObject({ state: 'running', counts: { pending: 10 }, waitingForWindow: { reason: 'start-at', opensAt: iso(startAt) } });
      await waitFor(async () => (await handle.describe()).memo?.waitingForWindow === iso(startAt), { what: 'the memo shows the start time' });
      expect(c.publishTimes()).toEqual([]);

      await ts.env.sleep(startAt + 120_000 - (await ts.env.currentTimeMs()));
      const between = await handle.query(campaignProgressQuery);
      expect(between).toMatchObject({ state: 'running', counts: { delivered: 6, pending: 4 }, waitingForWindow: { reason: 'window', opensAt: iso(startAt + TEN_MINUTES) } });
      expect((await handle.describe()).memo?.waitingForWindow).toBe(iso(startAt + TEN_MINUTES));

      const result = await handle.result();
      expect(result).toMatchObject({ state: 'completed', counts: { delivered: 10, pending: 0 } });
      expect(result.waitingForWindow).toBeUndefined();
      // Recorded times are when a task completed, a few real milliseconds after the decision.
      const offsets = c.publishTimes().map((t) => Math.round((t - startAt) / 1_000));
      expect(offsets).toEqual([0, 10, 20, 30, 40, 50, 600, 610, 620, 630]);
      expect((await handle.describe()).memo?.waitingForWindow).toBeUndefined();
    });

    it('a deadline that passes while waiting for the window ends the open targets as at any deadline', async () => {
      const startAt = await markAfterNext();
      // The deadline counts from the start time: 5 minutes, before the next window opens.
      const c = campaign({ total: 3, chunkSize: 3, deadlineMs: 300_000, recheckMs: 30_000, onlineFrom: { 0: 0 }, schedule: { startAt, windows: [window] } });
      const result = await ts.env.client.workflow.execute(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });

      expect(result).toMatchObject({ state: 'completed', counts: { total: 3, delivered: 1, offline: 2, pending: 0 } });
      // Tried at the opening and at the recheck inside the window; none after it closed.
      expect(c.publishTimes().map((t) => Math.round((t - startAt) / 1_000))).toEqual([0, 30]);
      const finish = ts.callsOf('finishCampaignChunks').filter((call) => call.input.campaignId === c.campaignId);
      expect(finish.map((call) => [call.input.ending, call.input.reason])).toEqual([['expire', 'the campaign deadline passed']]);
      expect(Math.round(((finish[0]?.at as number) - startAt) / 1_000)).toBe(300);
    });

    it('a pause while waiting for a window holds through the next one; resume waits for the window after', async () => {
      const startAt = await markAfterNext();
      const c = campaign({ total: 2, chunkSize: 2, onlineFrom: { 0: 0, 1: 0 }, schedule: { startAt, windows: [window] } });
      const handle = await ts.env.client.workflow.start(runCampaign, { args: [c.input], workflowId: c.workflowId, taskQueue: ts.taskQueue });
      expect((await handle.executeUpdate(pauseCampaignUpdate)).state).toBe('paused');
      await ts.env.sleep(startAt + 120_000 - (await ts.env.currentTimeMs()));
      expect(c.publishTimes()).toEqual([]);
      expect(await handle.query(campaignProgressQuery)).toMatchObject({ state: 'paused', counts: { pending: 2 } });

      const resumed = await handle.executeUpdate(resumeCampaignUpdate);
      expect(resumed).toMatchObject({ state: 'running', waitingForWindow: { reason: 'window', opensAt: iso(startAt + TEN_MINUTES) } });
      const result = await handle.result();
      expect(result.counts).toMatchObject({ delivered: 2, pending: 0 });
      expect(c.publishTimes().map((t) => Math.round((t - startAt) / 1_000))).toEqual([600]);
    });
  });
});
