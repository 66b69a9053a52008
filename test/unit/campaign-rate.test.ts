import { describe, expect, it } from 'vitest';
import { batchAllowance, initialPacer, measuredRatePerMinute, reserve, type PacerState } from '../../src/domain/campaign-rollout';
import type { Rollout } from '../../src/domain/schemas/campaign';

/** A campaign paced at `limit`/min: each batch is launched at its slot and reported at once. */
function paced(limit: number, seconds: number): { recent: [number, number][]; pacer: PacerState; startedAt: number; samples: number[] } {
  const rollout = { maximumPerMinute: limit, batchSize: 500 } as Rollout;
  let pacer = initialPacer(rollout);
  const startedAt = 1_000_000;
  const recent: [number, number][] = [];
  const samples: number[] = [];
  for (let now = startedAt; now <= startedAt + seconds * 1_000; now += 250) {
    if (now >= pacer.nextSlotAt) {
      const n = batchAllowance(rollout, pacer);
      pacer = reserve(pacer, n, now);
      recent.push([now, n]);
    }
    samples.push(measuredRatePerMinute(recent, now, startedAt, pacer, 60_000));
  }
  return { recent, pacer, startedAt, samples };
}

describe('measuredRatePerMinute', () => {
  it('never reads above the limit while the pacer holds it, from the first batch on', () => {
    for (const limit of [30, 45, 600, 6_000]) {
      const { samples } = paced(limit, 90);
      expect(Math.max(...samples), `limit ${limit}`).toBeLessThanOrEqual(limit);
      // and it reads about the limit once a few batches ran (this loop launches on a 250 ms tick, so a
      // 1.33 s slot waits until 1.5 s: 40/min at a 45/min limit)
      expect(samples.at(-1)!, `limit ${limit}`).toBeGreaterThanOrEqual(Math.floor(limit * 0.85));
    }
  });

  it('reads what was published over the last minute when there is no limit, and 0 when nothing was', () => {
    const pacer = initialPacer({ batchSize: 500 } as Rollout);
    const now = 2_000_000;
    expect(measuredRatePerMinute([[now - 30_000, 500], [now - 10_000, 500]], now, now - 120_000, pacer, 60_000)).toBe(1_000);
    expect(measuredRatePerMinute([[now - 90_000, 500]], now, now - 120_000, pacer, 60_000)).toBe(0);
  });
});
