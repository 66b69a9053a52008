import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueName, waitFor } from '../harness';
import { ids, registerDevices, TestDevices } from '../support/campaign-devices';
import { startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';
import { startWorkerProcess } from '../support/worker-process';
import { UNKNOWN_OUTCOME_ERROR } from '../../src/domain/campaign-target-state';

let env: DeviceOpsTestEnv;
let devices: TestDevices;
const started: ChildProcess[] = [];

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  devices = new TestDevices(env.broker);
});

afterAll(async () => {
  env?.broker.faults.reset();
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await devices?.disconnectAll();
  await env?.close();
});

/** Starts a worker process on `taskQueue`; resolves once it polls. */
async function workerProcess(taskQueue: string): Promise<ChildProcess> {
  const child = await startWorkerProcess(env, taskQueue);
  started.push(child);
  return child;
}

describe('campaign after a worker crash', () => {
  it('resumes from recorded progress when the worker is killed and another starts; one final record per target', async () => {
    const taskQueue = uniqueName('campaign-crash');
    const name = 'crash-monitor';
    await registerDevices(env.emqx, [name]);
    await devices.connect(name, 'crash/+/cmd');
    const targets = ids('crash', 80).map((clientId) => ({ clientId }));

    const first = await workerProcess(taskQueue);
    // The broker answers each publish 1.5 s after routing it (well inside the worker's request
    // timeout), so the kill below lands while a request EMQX has applied still awaits its answer.
    env.broker.faults.set({ restAnswerDelayMs: 1_500 });
    const { campaignId } = await env.ops.campaigns.start(
      {
        targets: { list: targets },
        message: { topic: 'crash/${clientid}/cmd', payload: { format: 'text', text: 'x' } },
        // One subscriber stands in for the fleet: trust EMQX's answer (docs/campaign-delivery.md).
        offline: { confirmAtDevice: false },
        rollout: { maximumPerMinute: 600 },
      },
      { taskQueue },
    );
    await waitFor(() => devices.received(name).length >= 20, { what: 'first messages', timeoutMs: 30_000 });
    const exited = new Promise((resolve) => first.once('exit', resolve));
    expect(first.kill('SIGKILL')).toBe(true);
    await exited;
    const atCrash = devices.received(name).length;
    expect(atCrash).toBeLessThan(80);
    env.broker.faults.reset();

    await workerProcess(taskQueue);
    const summary = await env.ops.campaigns.handle(campaignId).result();
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 80, pending: 0 } });

    const records = await env.ops.campaigns.finalRecords(campaignId);
    expect(records).toHaveLength(80);
    expect(new Set(records.map((r) => r.clientId)).size).toBe(80);
    // The request in flight at the kill (marked before it was sent) ends as an unknown outcome
    // (retry.unknownOutcome "give-up", the default): not sent again. Every other target delivered.
    const cut = records.filter((r) => r.status !== 'delivered');
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.every((r) => r.status === 'failed' && r.lastError?.startsWith(UNKNOWN_OUTCOME_ERROR))).toBe(true);
    expect(summary.counts.delivered).toBe(80 - cut.length);

    // No device got the message twice: the cut request's messages went out once (EMQX had routed
    // them before the kill) and were not sent again.
    const perTopic = new Map<string, number>();
    for (const a of devices.received(name)) perTopic.set(a.topic, (perTopic.get(a.topic) ?? 0) + 1);
    expect(perTopic.size).toBe(80);
    expect([...perTopic.entries()].filter(([, n]) => n > 1)).toEqual([]);
  }, 180_000);
});
