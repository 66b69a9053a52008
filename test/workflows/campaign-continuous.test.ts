import { describe, expect, it } from 'vitest';
import type { DeviceAgent, DeviceAgentOptions } from '../../examples/device-agent/agent';
import { uniqueName, waitFor } from '../harness';
import { DEVICE_PASSWORD, registerDevices } from '../support/campaign-devices';
import { runCliWith } from '../support/cli-runner';
import { parseFleetFile } from '../../src/starter/client/fleet-file';
import { passwordOf, QUIET_ALARMS, useJobTestEnv } from '../support/job-env';
import { recordDevices } from '../support/presence-env';

/**
 * Continuous campaigns (docs/campaigns.md, "Continuous campaigns") end to end on the real stack:
 * the dev broker with devices running the example agent (mqtt.js), the worker, Temporal and
 * FerretDB. A selector campaign started with `--continuous` reaches devices provisioned or tagged
 * after it started (told by the provisioning's record save, or found by its rescan of the device
 * records when that signal never came), one target per device, until `campaign close`.
 */

const jobEnv = useJobTestEnv();

function agent(clientId: string, password = passwordOf(clientId), jobs: DeviceAgentOptions['jobs'] = {}): Promise<DeviceAgent> {
  return jobEnv.startAgent({ clientId, password, jobs });
}

async function provision(clientId: string, tags: string[]): Promise<void> {
  await jobEnv.env.ops.provision({ clientId, password: passwordOf(clientId), jobs: true, tags, alarmPolicy: QUIET_ALARMS });
}

describe('continuous campaigns', () => {
  it('reaches devices provisioned and tagged after the start (one target each, not a non-matching one) until closed', async () => {
    await provision('cont-a-1', ['cont-north']);
    await provision('cont-x-1', []);
    const a1 = await agent('cont-a-1');
    const x1 = await agent('cont-x-1');

    // A rescan an hour away: within this test only the provisioning's signal can bring devices in.
    const started = await runCliWith(jobEnv.env.ops, [
      'campaign', 'start', '--select-tag', 'cont-north', '--continuous', '--rescan-interval', '1h', '--expect-reply', '--wait-offline',
      '--recheck', '2s', '--payload', '{"job":"${jobid}"}', '--payload-format', 'json', '--id', 'cont-1', '--json',
    ]);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);

    const first = await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('cont-1');
        return p.replies?.succeeded === 1 ? p : undefined;
      },
      { what: 'the first device answered', timeoutMs: 60_000 },
    );
    // Every target it has is final, but it stays open.
    expect(first).toMatchObject({ state: 'running', continuous: 'open', counts: { total: 1, delivered: 1, pending: 0 } });
    expect(a1.jobs).toEqual(['cont-1']);

    // Provisioned after the start, with the tag: joins; its agent connects after the provisioning.
    await provision('cont-a-2', ['cont-north']);
    const a2 = await agent('cont-a-2');
    // Tagged after the start (provisioned again with the tag), online all along: joins.
    await provision('cont-x-1', ['cont-north']);
    // Not matching: never reached. Provisioned twice: still one target.
    await provision('cont-b-1', ['cont-south']);
    const b1 = await agent('cont-b-1');
    await provision('cont-a-1', ['cont-north', 'cont-extra']);

    const joined = await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('cont-1');
        return p.replies?.succeeded === 3 ? p : undefined;
      },
      { what: 'the devices that joined answered', timeoutMs: 60_000 },
    );
    expect(joined).toMatchObject({ state: 'running', continuous: 'open', counts: { total: 3, delivered: 3, pending: 0 } });
    const status = await runCliWith(jobEnv.env.ops, ['campaign', 'status', 'cont-1']);
    expect(status.stdout).toContain('campaign cont-1: running  continuous: open');

    const closed = await runCliWith(jobEnv.env.ops, ['campaign', 'close', 'cont-1', '--json']);
    expect(closed.code).toBe(0);
    expect(JSON.parse(closed.stdout)).toMatchObject({ continuous: 'closed' });
    const summary = await jobEnv.env.ops.campaigns.handle('cont-1').result();
    expect(summary).toMatchObject({ state: 'completed', continuous: 'closed', counts: { total: 3, delivered: 3, pending: 0 } });
    expect(summary.replies).toEqual({ queued: 0, inProgress: 0, succeeded: 3, failed: 0, rejected: 0, timedOut: 0, canceled: 0 });

    const records = await jobEnv.env.ops.campaigns.finalRecords('cont-1');
    expect(records.map((r) => r.clientId).sort()).toEqual(['cont-a-1', 'cont-a-2', 'cont-x-1']);
    expect(a1.jobs).toEqual(['cont-1']);
    expect(a2.jobs).toEqual(['cont-1']);
    expect(x1.jobs).toEqual(['cont-1']);
    expect(b1.jobs).toEqual([]);
    const rows = [];
    for await (const row of jobEnv.env.ops.campaigns.results('cont-1')) rows.push(row);
    expect(rows.map((r) => [r.clientId, r.status, r.replyStatus])).toEqual([
      ['cont-a-1', 'delivered', 'SUCCEEDED'],
      ['cont-a-2', 'delivered', 'SUCCEEDED'],
      ['cont-x-1', 'delivered', 'SUCCEEDED'],
    ]);
    expect((await jobEnv.env.ops.campaigns.status('cont-1')).continuous).toBe('closed');

    // A closed (ended) campaign cannot be closed again.
    const again = await runCliWith(jobEnv.env.ops, ['campaign', 'close', 'cont-1']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('cont-1 is not running');
  }, 180_000);

  it('a device whose signal was lost is found by the rescan, also across a worker restart and continue-as-new', async () => {
    const taskQueue = uniqueName('continuous-rescan');
    let worker = await jobEnv.env.extraWorker(jobEnv.env.emqx, { taskQueue });
    await registerDevices(jobEnv.env.emqx, ['cont-r-1', 'cont-r-2']);
    await recordDevices(jobEnv.env.history, ['cont-r-1']);
    const r1 = await agent('cont-r-1', DEVICE_PASSWORD);

    const started = await jobEnv.env.ops.campaigns.start(
      {
        campaignId: 'cont-rescan',
        targets: { selector: { prefix: 'cont-r-' } },
        message: { topic: 'devices/${clientid}/jobs/rescan-job', payload: { format: 'text', text: 'go' } },
        offline: { wait: true, recheckIntervalMs: 2_000 },
        continuous: { rescanIntervalMs: 2_000 },
      },
      // A new run after every batch: the open campaign's state goes through continue-as-new.
      { taskQueue, batchesPerRun: 1 },
    );
    await waitFor(() => (r1.jobs.length === 1 ? true : undefined), { what: 'the first device reached', timeoutMs: 60_000 });

    await worker.stop();
    // Saved straight to MongoDB: no campaign is told, as when the provisioning's signal is lost.
    await recordDevices(jobEnv.env.history, ['cont-r-2']);
    const r2 = await agent('cont-r-2', DEVICE_PASSWORD);
    worker = await jobEnv.env.extraWorker(jobEnv.env.emqx, { taskQueue });

    // The device gets its message a moment before the batch records it: wait for the record.
    const open = await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('cont-rescan');
        return p.counts.delivered === 2 ? p : undefined;
      },
      { what: 'the device the rescan found reached', timeoutMs: 60_000 },
    );
    expect(open).toMatchObject({ state: 'running', continuous: 'open', counts: { total: 2, delivered: 2 } });
    expect(r2.jobs).toEqual(['rescan-job']);
    expect((await jobEnv.env.ops.campaigns.handle('cont-rescan').describe()).runId).not.toBe(started.runId);

    await jobEnv.env.ops.campaigns.close('cont-rescan');
    const summary = await jobEnv.env.ops.campaigns.handle('cont-rescan').result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 2, delivered: 2, pending: 0 } });
    expect((await jobEnv.env.ops.campaigns.finalRecords('cont-rescan')).map((r) => r.clientId).sort()).toEqual(['cont-r-1', 'cont-r-2']);
    expect(r1.jobs).toEqual(['rescan-job']);
    expect(r2.jobs).toEqual(['rescan-job']);
    await worker.stop();
  }, 180_000);

  it('pause holds joining devices until resume; cancel ends an open campaign', async () => {
    await provision('cont-p-1', ['cont-pause']);
    const p1 = await agent('cont-p-1');
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'cont-pause',
      // A prefix as well: the devices signalled are looked up by id within the prefix.
      targets: { selector: { prefix: 'cont-p-', tag: 'cont-pause' } },
      message: { topic: 'devices/${clientid}/jobs/pause-job', payload: { format: 'text', text: 'go' } },
      continuous: { rescanIntervalMs: 3_600_000 },
    });
    await waitFor(() => (p1.jobs.length === 1 ? true : undefined), { what: 'the first device reached', timeoutMs: 60_000 });
    await jobEnv.env.ops.campaigns.pause('cont-pause');
    await provision('cont-p-2', ['cont-pause']);
    const p2 = await agent('cont-p-2');
    // The signal arrived, but a paused campaign takes no device; its count is unchanged.
    expect((await jobEnv.env.ops.campaigns.status('cont-pause')).counts.total).toBe(1);
    expect(p2.jobs).toEqual([]);
    await jobEnv.env.ops.campaigns.resume('cont-pause');
    await waitFor(() => (p2.jobs.length === 1 ? true : undefined), { what: 'the device that joined while paused reached', timeoutMs: 60_000 });
    const cancelled = await jobEnv.env.ops.campaigns.cancel('cont-pause', 'test over');
    expect(cancelled).toMatchObject({ state: 'cancelled', counts: { total: 2, delivered: 2 } });
  }, 120_000);

  it('reaches the devices of a fleet provisioned after the start, starting with no target', async () => {
    await jobEnv.env.ops.campaigns.start({
      campaignId: 'cont-fleet',
      targets: { selector: { tag: 'cont-fleet' } },
      message: { topic: 'devices/${clientid}/jobs/fleet-job', payload: { format: 'text', text: 'go' } },
      continuous: { rescanIntervalMs: 3_600_000 },
    });
    const lines = ['clientId,password,acl,subscriptions,tags', 'cont-f-1,password-f1-xyz,,,cont-fleet', 'cont-f-2,password-f2-xyz,,,cont-fleet', 'cont-f-3,password-f3-xyz,,,other'];
    const { handle } = await jobEnv.env.ops.startFleetProvisioning(parseFleetFile(lines.join('\n'), 'csv'));
    expect(await handle.result()).toMatchObject({ provisioned: 3, failed: 0 });
    // Nobody is connected: each target ends offline once published to.
    await waitFor(
      async () => {
        const p = await jobEnv.env.ops.campaigns.status('cont-fleet');
        return p.counts.total === 2 && p.counts.pending === 0 ? p : undefined;
      },
      { what: 'the fleet devices reached', timeoutMs: 60_000 },
    );
    await jobEnv.env.ops.campaigns.close('cont-fleet');
    const summary = await jobEnv.env.ops.campaigns.handle('cont-fleet').result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 2, offline: 2 } });
    expect((await jobEnv.env.ops.campaigns.finalRecords('cont-fleet')).map((r) => r.clientId).sort()).toEqual(['cont-f-1', 'cont-f-2']);
  }, 120_000);

  it('refuses --continuous with a list of targets, naming the field', async () => {
    const cli = await runCliWith(jobEnv.env.ops, ['campaign', 'start', '--targets', '-', '--continuous', '--topic', 't/${clientid}', '--payload', 'x'], 'dev-1\n');
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('--continuous');
    expect(cli.stderr).toContain('a list of targets cannot grow');
    await expect(
      jobEnv.env.ops.campaigns.start({ targets: { list: [{ clientId: 'dev-1' }] }, message: { topic: 't', payload: { format: 'text', text: 'x' } }, continuous: true }),
    ).rejects.toThrow(/continuous: a continuous campaign selects its targets/);
    const flag = await runCliWith(jobEnv.env.ops, ['campaign', 'start', '--select-tag', 'x', '--rescan-interval', '1m', '--topic', 't', '--payload', 'x']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--rescan-interval');
  });
});
