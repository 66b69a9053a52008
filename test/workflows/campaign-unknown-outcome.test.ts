import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNKNOWN_OUTCOME_ERROR } from '../../src/domain/campaign-target-state';
import { createEmqxClient, type EmqxClient } from '../../src/emqx';
import { uniqueName, waitFor } from '../harness';
import { ids, registerDevices, TestDevices } from '../support/campaign-devices';
import { API_KEY, API_SECRET, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

/**
 * A `/publish/bulk` request whose answer is lost after EMQX applied it. EMQX's handler publishes
 * every message of the request before it answers (emqx_mgmt_api_publish.erl, `publish_batch/2`:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl;
 * test case `t_publish_bulk_api` in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/test/emqx_mgmt_api_publish_SUITE.erl),
 * so a client timeout says nothing about whether the devices got the message. The dev broker's
 * `restAnswerDelayMs` fault holds every answer back after the publish was routed; the worker's bulk
 * publishes give up waiting first.
 */

const ANSWER_DELAY_MS = 2_500;
const PUBLISH_TIMEOUT_MS = 1_000;
const TOPIC = 'campaign/${clientid}/cmd';

let env: DeviceOpsTestEnv;
let devices: TestDevices;
let impatient: EmqxClient;
let worker: Awaited<ReturnType<DeviceOpsTestEnv['extraWorker']>>;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
  devices = new TestDevices(env.broker);
  impatient = createEmqxClient({ baseUrl: env.broker.apiUrl, apiKey: API_KEY, apiSecret: API_SECRET, timeoutMs: PUBLISH_TIMEOUT_MS });
  // Only the bulk publish is impatient: the session reads around it (confirmAtDevice) wait for their answers.
  const emqx = Object.create(env.emqx) as EmqxClient;
  emqx.publishBulk = (messages, opts) => impatient.publishBulk(messages, opts);
  emqx.listClients = (query, opts) => env.emqx.listClients(query, opts);
  worker = await env.extraWorker(emqx);
});

afterAll(async () => {
  env?.broker.faults.reset();
  await worker?.stop();
  await devices?.disconnectAll();
  await impatient?.close();
  await env?.close();
});

async function runWithLostAnswers(prefix: string, retry: Record<string, unknown>) {
  const targets = ids(uniqueName(prefix), 3);
  await registerDevices(env.emqx, targets);
  await devices.connectAll(targets);
  env.broker.faults.set({ restAnswerDelayMs: ANSWER_DELAY_MS });
  try {
    const started = await worker.ops.campaigns.start({
      targets: { list: targets.map((clientId) => ({ clientId })) },
      message: { topic: TOPIC, payload: { format: 'text', text: `${prefix} \${clientid}` }, qos: 1 },
      retry,
    });
    const summary = await worker.ops.campaigns.handle(started.campaignId).result();
    return { targets, campaignId: started.campaignId, summary };
  } finally {
    env.broker.faults.reset();
  }
}

describe('a bulk publish whose answer is lost', () => {
  it('is not sent again by default: each device has the message once and its target ends failed as an unknown outcome', async () => {
    const { targets, campaignId, summary } = await runWithLostAnswers('giveup', { transient: { retries: 3, backoffMs: 0 } });
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 3, delivered: 0, failed: 3 } });
    await waitFor(() => targets.every((id) => devices.received(id).length > 0), { what: 'the one publish reached every device' });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload), id).toEqual([`giveup ${id}`]);
    const records = await worker.ops.campaigns.finalRecords(campaignId);
    expect(records).toHaveLength(3);
    for (const r of records) {
      expect(r).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining(UNKNOWN_OUTCOME_ERROR) });
      expect(r.lastError).toContain(`timed out after ${PUBLISH_TIMEOUT_MS} ms`);
    }
  });

  it('with retry.unknownOutcome "retry" is sent again as a transient failure: at-least-once, each retry a possible duplicate', async () => {
    const { targets, campaignId, summary } = await runWithLostAnswers('again', { transient: { retries: 1, backoffMs: 0 }, unknownOutcome: 'retry' });
    expect(summary).toMatchObject({ state: 'completed', counts: { total: 3, delivered: 0, failed: 3 } });
    await waitFor(() => targets.every((id) => devices.received(id).length === 2), { what: 'both publishes reached every device' });
    for (const id of targets) expect(devices.received(id).map((a) => a.payload), id).toEqual([`again ${id}`, `again ${id}`]);
    for (const r of await worker.ops.campaigns.finalRecords(campaignId)) {
      expect(r).toMatchObject({ status: 'failed', attempts: 2, lastError: expect.stringContaining(`timed out after ${PUBLISH_TIMEOUT_MS} ms`) });
      expect(r.lastError).not.toContain(UNKNOWN_OUTCOME_ERROR);
    }
  });
});
