import { randomBytes } from 'node:crypto';
import { startBroker } from '../devstack/broker';
import { createEmqxClient, EmqxUnavailableError, type EmqxClient, type PublishMessage } from '../src/emqx';
import { round } from './cpu';
import { startFleet, type Fleet } from './presence';
import { percentile } from './stack';

/**
 * bench/broker-bulk: how long the dev broker (devstack/broker) takes to answer one
 * `POST /publish/bulk` of 500 QoS 1 messages, each to a live MQTT subscriber, with few and with
 * many subscribers connected (BROKER_BULK_SUBSCRIBERS, default `100,5000`, one run). The
 * subscribers are mqtt.js clients in their own process (bench/device-fleet.ts), each subscribed at
 * QoS 1 to `bench/<clientid>/cmd`; every message goes to one of them (round robin), so a bulk
 * costs the same work per message whatever the count. Also reported: the time until every
 * subscriber has the message (`deliveredMs`). The broker runs in this process; run with
 * `node --cpu-prof` (e.g. `BENCH_NODE_OPTIONS`) to see where its time goes.
 * Target: the many-subscriber figure within 2x the baseline.
 */

const BULK_SIZE = 500;

function progress(message: string): void {
  console.error(`[bench broker-bulk] ${message}`);
}

export async function benchBrokerBulk(): Promise<Record<string, unknown>> {
  const counts = (process.env.BROKER_BULK_SUBSCRIBERS ?? '100,5000').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('BROKER_BULK_SUBSCRIBERS: a comma-separated list of positive integers');
  const rounds = Number(process.env.BROKER_BULK_ROUNDS ?? 10);
  const apiSecret = randomBytes(12).toString('hex');
  const broker = await startBroker({ apiKey: 'bench', apiSecret, authenticationEnabled: false });
  const emqx = createEmqxClient({ baseUrl: broker.apiUrl, apiKey: 'bench', apiSecret });
  const fleets: Fleet[] = [];
  const results: Record<string, unknown>[] = [];
  try {
    let connected = 0;
    for (const count of [...counts].sort((a, b) => a - b)) {
      // Each step adds its devices in a fleet process of its own (device-fleet holds one list).
      const ids = Array.from({ length: count - connected }, (_, i) => `s-${connected + i}`);
      const fleet = startFleet();
      fleets.push(fleet);
      const took = await fleet.send({ cmd: 'connect', url: broker.mqttUrl, ids, topic: 'bench/${clientid}/cmd' });
      connected = count;
      progress(`${count} subscribers connected (the last ${ids.length} in ${round(took.seconds)} s)`);
      results.push({ subscribers: count, ...(await timeBulks(emqx, fleets, count, rounds)) });
    }
  } finally {
    for (const fleet of fleets) {
      await fleet.send({ cmd: 'close' }).catch(() => undefined);
      fleet.stop();
    }
    await emqx.close();
    await broker.close();
  }
  const first = results[0] as { medianMs: number };
  const last = results.at(-1) as { medianMs: number };
  return {
    bulkSize: BULK_SIZE,
    qos: 1,
    rounds,
    runs: results,
    ratio: round(last.medianMs / first.medianMs),
    target: 'the many-subscriber median within 2x the baseline',
  };
}

async function received(fleets: Fleet[]): Promise<number> {
  let total = 0;
  for (const fleet of fleets) {
    const reply = await fleet.send({ cmd: 'received' });
    for (const counts of Object.values(reply.received ?? {})) total += counts.messages;
  }
  return total;
}

async function timeBulks(emqx: EmqxClient, fleets: Fleet[], subscribers: number, rounds: number) {
  const answerMs: number[] = [];
  const deliveredMs: number[] = [];
  let notDelivered = 0;
  let timedOut = 0;
  let expected = await received(fleets);
  // Round 0 warms up (JIT, connection pools) and is not counted.
  for (let r = 0; r <= rounds; r++) {
    const messages: PublishMessage[] = Array.from({ length: BULK_SIZE }, (_, i) => ({
      topic: `bench/s-${(r * BULK_SIZE + i) % subscribers}/cmd`,
      payload: `{"round":${r},"i":${i}}`,
      qos: 1,
    }));
    const t0 = performance.now();
    // The REST client gives up after its timeout (10 s); such a bulk is counted, and its messages may still arrive.
    const outcomes = await emqx.publishBulk(messages).catch((err: unknown) => {
      if (err instanceof EmqxUnavailableError) return null;
      throw err;
    });
    const answered = performance.now() - t0;
    if (!outcomes) timedOut += 1;
    notDelivered += outcomes ? outcomes.filter((o) => o.status !== 'delivered').length : 0;
    expected += BULK_SIZE;
    const deadline = t0 + 60_000;
    let got = await received(fleets);
    while (got < expected && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      got = await received(fleets);
    }
    if (got < expected) throw new Error(`${expected - got} messages not received within 60 s with ${subscribers} subscribers`);
    if (r === 0) continue;
    answerMs.push(answered);
    deliveredMs.push(performance.now() - t0);
  }
  const sorted = (list: number[]): number[] => [...list].sort((a, b) => a - b);
  const result = {
    medianMs: round(percentile(sorted(answerMs), 50)),
    maxMs: round(Math.max(...answerMs)),
    deliveredMedianMs: round(percentile(sorted(deliveredMs), 50)),
    notDelivered,
    timedOut,
  };
  progress(`${subscribers} subscribers: ${JSON.stringify(result)}`);
  return result;
}
