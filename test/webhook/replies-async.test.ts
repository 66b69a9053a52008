import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobExecutionStore } from '../../src/store/job-executions';
import { DeviceReplyStore } from '../../src/store/job-replies';
import { waitFor } from '../harness';
import { postEvents, startPresenceEnv, WEBHOOK_TOKEN, type PresenceTestEnv } from '../support/presence-env';

/**
 * `POST /emqx/replies` answers once the replies are stored; the adapter's applier applies them in
 * the background (docs/jobs.md). The bodies are those of EMQX's rule engine for a `message.publish`
 * event (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl
 * eventmsg_publish/1). EMQX's HTTP action drops a request that waited longer than its `request_ttl`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl),
 * so a burst must be answered quickly, not at the pace of the applies.
 */

let env: PresenceTestEnv;
let executions: JobExecutionStore;
let replies: DeviceReplyStore;

beforeAll(async () => {
  env = await startPresenceEnv();
  executions = new JobExecutionStore(env.history.db);
  replies = new DeviceReplyStore(env.history.db);
});

afterAll(async () => {
  await env?.close();
});

let sequence = 0;
/** An EMQX message id (16 bytes, hex), unique in this file. */
const messageId = (): string => `0006${(++sequence).toString(16).padStart(28, '0')}`.toUpperCase();

function statusEvent(clientId: string, jobId: string, payload: Record<string, unknown>, at: number): Record<string, unknown> {
  return {
    event: 'message.publish',
    id: messageId(),
    clientid: clientId,
    username: clientId,
    topic: `devices/${clientId}/jobs/${jobId}/status`,
    qos: 1,
    payload: JSON.stringify(payload),
    publish_received_at: at,
    timestamp: at,
  };
}

const post = (url: string, body: unknown): Promise<{ status: number; body: unknown }> => postEvents(url, body, { authorization: `Bearer ${WEBHOOK_TOKEN}` }, '/emqx/replies');

describe('replies are stored, answered, then applied in the background', () => {
  it('a burst of 500 status reports posted at once is answered 2xx within seconds and applied in receive order per target', async () => {
    const jobId = 'burst-job';
    const targets = Array.from({ length: 250 }, (_, i) => `burst-${i}`);
    await executions.queue(jobId, targets, Date.now());
    const at = Date.now();
    // Each target's IN_PROGRESS was received by EMQX before its SUCCEEDED; the requests go side by
    // side, the SUCCEEDED ones first, as EMQX's HTTP action may deliver them.
    const bodies = [
      ...targets.map((clientId) => statusEvent(clientId, jobId, { status: 'SUCCEEDED' }, at + 10)),
      ...targets.map((clientId) => statusEvent(clientId, jobId, { status: 'IN_PROGRESS', progress: 40 }, at)),
    ];
    const started = Date.now();
    const answers = await Promise.all(bodies.map((body) => post(env.adapterUrl, body)));
    const answeredInMs = Date.now() - started;
    // The answers did not wait for the applies: when the last one came, reports were still waiting
    // (FerretDB applies a few dozen per second at most, docs/capacity.md).
    const waitingWhenAnswered = await replies.countUnapplied();
    expect(answers.map((a) => a.status)).toEqual(bodies.map(() => 200));
    expect(answers.every((a) => (a.body as { stored: number }).stored === 1)).toBe(true);
    // Applying 500 reports on FerretDB takes longer than this (docs/capacity.md): the answers did not wait for it.
    expect(answeredInMs).toBeLessThan(10_000);
    expect(waitingWhenAnswered).toBeGreaterThan(0);

    const counts = await waitFor(
      async () => {
        const c = await executions.counts(jobId);
        return c.SUCCEEDED === targets.length ? c : undefined;
      },
      { what: 'every target SUCCEEDED', timeoutMs: 150_000, intervalMs: 1_000 },
    );
    expect(counts).toMatchObject({ QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: targets.length });
    const applied = await executions.many(jobId, targets);
    for (const clientId of targets) {
      // The SUCCEEDED report is the execution's verdict whether its IN_PROGRESS was applied before or after it.
      const body = bodies.find((b) => b.clientid === clientId && String(b.payload).includes('SUCCEEDED')) as { id: string };
      expect(applied.get(clientId)).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: body.id, reportedAt: at + 10 });
    }
    await waitFor(async () => (await replies.countUnapplied()) === 0, { what: 'no reply left pending', intervalMs: 500 });

    const health = await waitFor(async () => {
      const body = (await (await fetch(`${env.adapterUrl}/healthz`)).json()) as { repliesUnapplied: number };
      return body.repliesUnapplied === 0 ? body : undefined;
    }, { what: 'the backlog gauge at 0' });
    expect(health).toMatchObject({ status: 'ok', repliesUnapplied: 0 });
    const metrics = await (await fetch(`${env.adapterUrl}/metrics`)).text();
    expect(metrics).toContain('# TYPE device_ops_webhook_replies_unapplied gauge\ndevice_ops_webhook_replies_unapplied 0\n');
  }, 180_000);

  it('replies stored by an adapter that stopped before applying them are applied by another adapter', async () => {
    // Only the adapters of this test apply: the file's main adapter stops its applier.
    await env.adapter.applier.stop();
    const first = await env.extraAdapter({});
    await first.adapter.applier.stop();

    const jobId = 'crash-job';
    const targets = Array.from({ length: 20 }, (_, i) => `crash-${i}`);
    await executions.queue(jobId, targets, Date.now());
    const at = Date.now();
    const answers = await Promise.all(targets.map((clientId) => post(first.url, [statusEvent(clientId, jobId, { status: 'IN_PROGRESS' }, at), statusEvent(clientId, jobId, { status: 'FAILED', details: { reason: 'disk full' } }, at + 5)])));
    expect(answers.map((a) => a.body)).toEqual(targets.map(() => ({ replies: 2, stored: 2, refused: 0, ignored: 0 })));
    const command = { event: 'message.publish', id: messageId(), clientid: 'crash-cmd', username: 'crash-cmd', topic: 'devices/crash-cmd/commands/reboot-1/reply', qos: 1, payload: '{"status":"SUCCEEDED","result":{"up":true}}', publish_received_at: at, timestamp: at };
    expect((await post(first.url, command)).body).toEqual({ replies: 1, stored: 1, refused: 0, ignored: 0 });

    // Stored, not applied: the executions are still QUEUED and the replies pending.
    expect(await replies.countUnapplied()).toBe(targets.length * 2 + 1);
    expect(await executions.counts(jobId)).toMatchObject({ QUEUED: targets.length });
    expect(await replies.commandReply('crash-cmd', 'reboot-1')).toBeNull();

    await Promise.all([first.adapter.close(), env.adapter.close()]);
    const second = await env.extraAdapter({});
    await waitFor(async () => (await executions.counts(jobId)).FAILED === targets.length, { what: 'the new adapter applied the stored reports', timeoutMs: 60_000, intervalMs: 500 });
    expect(await executions.get(jobId, 'crash-0')).toMatchObject({ status: 'FAILED', details: '{"reason":"disk full"}', updates: 2 });
    expect(await replies.commandReply('crash-cmd', 'reboot-1')).toMatchObject({ status: 'SUCCEEDED', result: '{"up":true}' });
    await waitFor(async () => (await replies.countUnapplied()) === 0, { what: 'no reply left pending', intervalMs: 500 });
    await waitFor(() => second.adapter.applier.backlog() === 0, { what: 'the new adapter holds no reply' });
  });
});
