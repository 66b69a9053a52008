import { FLEET_CHUNK_SIZE } from '../src/contracts/fleet';
import type { FleetFileDevice } from '../src/starter/client/fleet-file';
import { round } from './cpu';
import { percentile, startBenchStack } from './stack';

/**
 * bench/provision: provisioning throughput on a private local stack.
 * - single: BENCH_SINGLE_DEVICES devices, one provisionDevice workflow each, BENCH_CONCURRENCY at a time;
 * - fleet: BENCH_FLEET_DEVICES devices through provisionFleet.
 * Prints one JSON object. Targets (issue): fleet of 10,000 in under 60 s; single >= 10 devices/s.
 */
export async function benchProvision(): Promise<Record<string, unknown>> {
  const singleCount = Number(process.env.BENCH_SINGLE_DEVICES ?? 300);
  const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 30);
  const fleetCount = Number(process.env.BENCH_FLEET_DEVICES ?? 10_000);
  const stack = await startBenchStack();
  try {
    // Warm-up: bundle load and first workflow tasks are not what we measure.
    await stack.ops.provision({ clientId: 'warmup', password: 'warmup-password', acl: [], subscriptions: [] });

    const latencies: number[] = [];
    let next = 0;
    const singleStart = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < singleCount) {
          const i = next++;
          const t0 = performance.now();
          await stack.ops.provision({
            clientId: `single-${i}`,
            password: `password-${i}-bench`,
            acl: [{ permission: 'allow', action: 'publish', topic: 'd/${clientid}/up' }],
            subscriptions: [{ topic: `d/single-${i}/cmd`, qos: 1 }],
          });
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const singleSeconds = (performance.now() - singleStart) / 1000;
    latencies.sort((a, b) => a - b);

    const devices: FleetFileDevice[] = Array.from({ length: fleetCount }, (_, i) => ({
      clientId: `fleet-${i}`,
      username: `fleet-${i}`,
      password: `password-${i}-fleet`,
      acl: [{ permission: 'allow', action: 'publish', topic: 'd/${clientid}/up' }],
      subscriptions: [],
      tags: [],
    }));
    const fleetStart = performance.now();
    const { handle } = await stack.ops.startFleetProvisioning(devices);
    const result = await handle.result();
    const fleetSeconds = (performance.now() - fleetStart) / 1000;
    const parentEvents = (await handle.describe()).historyLength;

    return {
      benchmark: 'provision',
      single: {
        devices: singleCount,
        concurrency,
        seconds: round(singleSeconds),
        devicesPerSecond: round(singleCount / singleSeconds),
        latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)) },
        target: { devicesPerSecond: 10, met: singleCount / singleSeconds >= 10 },
      },
      fleet: {
        devices: fleetCount,
        provisioned: result.provisioned,
        failed: result.failed,
        seconds: round(fleetSeconds),
        devicesPerSecond: round(fleetCount / fleetSeconds),
        chunkSize: FLEET_CHUNK_SIZE,
        parentHistoryEvents: parentEvents,
        target: { secondsFor10000: 60, met: fleetSeconds * (10_000 / fleetCount) < 60 },
      },
      workerRssMb: round(process.memoryUsage().rss / 1024 / 1024),
    };
  } finally {
    await stack.close();
  }
}

