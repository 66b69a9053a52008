import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliWith, type CliRun } from '../support/cli-runner';
import { ensureStatsSchedule } from '../../src/temporal/schedules';
import { uniqueName, waitFor } from '../harness';
import { connectDevice, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
});

afterAll(async () => {
  await env?.close();
});

async function cli(args: string[], stdin = ''): Promise<CliRun> {
  return runCliWith(env.ops, args, stdin);
}

describe('statistics snapshots', () => {
  it('a scheduled snapshot lands in MongoDB from the broker real counters, and stats reports them', async () => {
    await env.ops.provision({ clientId: 'stats-a', password: 'stats-password-a', acl: [{ permission: 'allow', action: 'all', topic: 'stats/#' }], subscriptions: [] });
    await env.ops.provision({ clientId: 'stats-b', password: 'stats-password-b', acl: [{ permission: 'allow', action: 'all', topic: 'stats/#' }], subscriptions: [] });
    const a = await connectDevice(env.broker, 'stats-a', 'stats-a', 'stats-password-a');
    const b = await connectDevice(env.broker, 'stats-b', 'stats-b', 'stats-password-b');
    try {
      await b.subscribeAsync('stats/#');
      for (let i = 0; i < 5; i++) await a.publishAsync('stats/x', `m${i}`, { qos: 1 });

      const scheduleId = uniqueName('stats');
      expect(await ensureStatsSchedule(env.temporal, { taskQueue: env.taskQueue, intervalMs: 3_600_000, scheduleId })).toBe('created');
      expect(await ensureStatsSchedule(env.temporal, { taskQueue: env.taskQueue, intervalMs: 3_600_000, scheduleId })).toBe('updated');
      const schedule = env.temporal.schedule.getHandle(scheduleId);
      try {
        await schedule.trigger();
        const snapshot = await waitFor(() => env.history.stats.latest(), { timeoutMs: 20_000, what: 'a stats snapshot' });
        expect(snapshot.online).toBe(2);
        expect(snapshot.subscriptions).toBeGreaterThanOrEqual(1);
        expect(snapshot.messages.received).toBeGreaterThanOrEqual(5);
        expect(snapshot.messages.sent).toBeGreaterThanOrEqual(5);
        expect(snapshot.id.startsWith(scheduleId)).toBe(true);
        // The per-minute runs are tagged, so the device-work view (docs/cli.md) leaves them out.
        const housekeeping = `WorkflowId STARTS_WITH "${scheduleId}" AND DeviceOperation = "broker-stats"`;
        const deviceWork = `WorkflowId STARTS_WITH "${scheduleId}" AND DeviceOperation NOT IN ("broker-stats", "presence-reconcile")`;
        await waitFor(async () => (await env.temporal.workflow.count(housekeeping)).count === 1, { what: 'the snapshot run to be visible with its DeviceOperation' });
        expect((await env.temporal.workflow.count(deviceWork)).count).toBe(0);

        for (let i = 0; i < 5; i++) await a.publishAsync('stats/x', `n${i}`, { qos: 1 });
        const now = await cli(['stats', '--json']);
        expect(now.code).toBe(0);
        const report = JSON.parse(now.stdout);
        expect(report).toMatchObject({ online: 2, messages: { received: expect.any(Number), sent: expect.any(Number), dropped: expect.any(Number) } });
        expect(report.messages.received).toBeGreaterThanOrEqual(snapshot.messages.received + 5);
        expect(report.rates.sinceSnapshotAt).toBe(snapshot.at);

        const trend = await cli(['stats', '--since', '1h']);
        expect(trend.stdout).toMatch(/1 snapshots/);
        expect((await cli(['stats', '--since', 'yesterday'])).code).toBe(2);
      } finally {
        await schedule.delete();
      }
    } finally {
      await Promise.allSettled([a.endAsync(), b.endAsync()]);
    }
  });
});
