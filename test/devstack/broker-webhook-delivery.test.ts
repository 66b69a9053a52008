import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { MqttClient } from 'mqtt';
import pino from 'pino';
import { MockAgent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultSwitchboard } from '../../devstack/broker/faults';
import type { WebhookTarget } from '../../devstack/broker/rule-engine/http-resources';
import { WebhookDeliveryQueue } from '../../devstack/broker/rule-engine/webhook-delivery';
import { connectClient, startTestBroker, unique, waitFor } from './broker-helpers';

/**
 * The delivery queue on its own, with undici's MockAgent recording the order in which requests
 * are dispatched, so ordering faults can be checked deterministically; and the requests on the
 * wire, as a real HTTP server sees them (the end-to-end webhook tests are in broker-rule-engine.test.ts).
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
  connectorName: 'test',
  connection: { origin: 'http://hooks.test', poolSize: 1, pipelining: 1, poolType: 'random', connectTimeoutMs: 1_000 },
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
  const queue = new WebhookDeliveryQueue('http:test', () => target, { dispatcherFor: () => agent as MockAgent, faults, logger: pino({ level: 'silent' }) });
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

/**
 * An HTTP server that records, per connection, how many requests it has received and not yet answered,
 * and holds every answer until `holdUntil` requests are unanswered at once; from then on it answers at once.
 */
class HoldingReceiver {
  readonly bodies: unknown[] = [];
  readonly pending = new Map<Socket, number>();
  maxPerConnection = 0;
  maxTotal = 0;
  private held: ServerResponse[] = [];
  private holding = true;
  private readonly server: Server;

  constructor(private readonly holdUntil: number) {
    this.server = createServer((req, res) => {
      const socket = req.socket;
      this.pending.set(socket, (this.pending.get(socket) ?? 0) + 1);
      res.on('finish', () => this.pending.set(socket, (this.pending.get(socket) ?? 1) - 1));
      this.maxPerConnection = Math.max(this.maxPerConnection, this.pending.get(socket) ?? 0);
      this.maxTotal = Math.max(this.maxTotal, this.unanswered());
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        this.held.push(res);
        if (this.unanswered() >= this.holdUntil) this.holding = false;
        if (!this.holding) this.answerHeld();
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const address = this.server.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }

  unanswered(): number {
    return [...this.pending.values()].reduce((a, b) => a + b, 0);
  }

  async close(): Promise<void> {
    this.answerHeld();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answerHeld(): void {
    for (const res of this.held.splice(0)) res.end('{}');
  }
}

/**
 * EMQX's HTTP connector sends each event as its own request over `pool_size` connections and pipelines up
 * to `enable_pipelining` requests on each before the first is answered:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl
 * (fields(config), on_start/2, resolve_pool_worker/2) and https://github.com/emqx/ehttpc/blob/0.7.3/src/ehttpc.erl
 * (maybe_shoot/1, check_gun_limit/2); emqx_bridge_http_schema.erl fields(action_resource_opts) has no batching.
 */
describe('webhook requests on the wire', () => {
  it.each([
    { poolSize: 2, pipelining: 4 },
    { poolSize: 3, pipelining: 1 },
  ])('sends one event per request over pool_size $poolSize connections, $pipelining in flight on each', async ({ poolSize, pipelining }) => {
    const devices = 40;
    const receiver = new HoldingReceiver(poolSize * pipelining);
    const url = await receiver.start();
    const { broker, api } = await startTestBroker({ authenticationEnabled: false });
    const clients: MqttClient[] = [];
    try {
      const name = unique('wire').replace(/-/g, '_');
      const connector = await api.post('/connectors', { type: 'http', name, url, pool_size: poolSize, enable_pipelining: pipelining });
      expect(connector.status).toBe(201);
      expect(connector.body).toMatchObject({ pool_size: poolSize, enable_pipelining: pipelining });
      expect((await api.post('/actions', { type: 'http', name, connector: name, parameters: { path: '/emqx/events', method: 'post' }, resource_opts: { inflight_window: 100 } })).status).toBe(201);
      expect((await api.post('/rules', { id: name, sql: 'SELECT * FROM "$events/client_connected"', actions: [`http:${name}`] })).status).toBe(201);

      for (let i = 0; i < devices; i++) clients.push(await connectClient(broker.mqttUrl, { clientId: `${name}-${i}` }));
      await waitFor(() => broker.webhookMetrics()[`http:${name}`]?.success === devices, { what: 'every event answered' });

      // Held answers are released only once every connection carried its full pipeline at once.
      expect(receiver.maxTotal).toBe(poolSize * pipelining);
      expect(receiver.maxPerConnection).toBe(pipelining);
      expect(receiver.pending.size).toBe(poolSize);
      expect(receiver.bodies).toHaveLength(devices);
      for (const body of receiver.bodies) expect(body).toMatchObject({ event: 'client.connected' });
      expect(broker.webhookAnswerTimes()[`http:${name}`]?.count).toBe(devices);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await broker.close();
      await receiver.close();
    }
  });
});
