import pino from 'pino';
import { MockAgent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultSwitchboard } from '../../devstack/broker/faults';
import type { WebhookTarget } from '../../devstack/broker/rule-engine/http-resources';
import { WebhookDeliveryQueue } from '../../devstack/broker/rule-engine/webhook-delivery';
import { waitFor } from './broker-helpers';

/**
 * The delivery queue on its own, with undici's MockAgent recording the order in which requests
 * are dispatched, so ordering faults can be checked deterministically (the end-to-end webhook
 * tests are in broker-rule-engine.test.ts).
 */

const target: WebhookTarget = {
  enabled: true,
  baseUrl: 'http://hooks.test',
  path: '/events',
  method: 'post',
  headers: { 'content-type': 'application/json' },
  bodyTemplate: undefined,
  maxRetries: 0,
  requestTimeoutMs: 1_000,
  requestTtlMs: 10_000,
  inflightWindow: 32,
};

let agent: MockAgent | undefined;

afterEach(async () => {
  await agent?.close();
  agent = undefined;
});

/** Delivers events n = 0..count-1 and resolves with the `n`s in dispatch order. */
async function dispatchOrder(faults: FaultSwitchboard, count: number): Promise<number[]> {
  agent = new MockAgent();
  agent.disableNetConnect();
  const order: number[] = [];
  agent
    .get('http://hooks.test')
    .intercept({ path: '/events', method: 'POST' })
    .reply(200, (request) => {
      // The queue always sends a rendered JSON string body.
      order.push((JSON.parse(request.body as string) as { n: number }).n);
      return {};
    })
    .times(count);
  const queue = new WebhookDeliveryQueue('http:test', () => target, { dispatcher: agent, faults, logger: pino({ level: 'silent' }) });
  for (let n = 0; n < count; n++) queue.enqueue({ n });
  await waitFor(() => queue.metrics().success === count, { what: 'every delivery' });
  queue.stop();
  return order;
}

describe('webhook delivery order', () => {
  it('dispatches queued events in the order they were fired', async () => {
    expect(await dispatchOrder(new FaultSwitchboard({}), 5)).toEqual([0, 1, 2, 3, 4]);
  });

  it('shuffles the events of one in-flight window when reordering is on', async () => {
    // With random() = 0, Fisher-Yates turns [0, 1, 2, 3, 4] into [1, 2, 3, 4, 0].
    const faults = new FaultSwitchboard({ webhookReorder: true }, () => 0);
    expect(await dispatchOrder(faults, 5)).toEqual([1, 2, 3, 4, 0]);
  });
});
