import type { EmqxClient } from '../emqx';
import type { History } from '../store';
import { snapshotFromCounters } from '../store/stats';
import { emqxStep } from './failures';

/** Business statistics: one snapshot of EMQX's aggregate /stats and /metrics per scheduled run. */
export function createStatsActivities(deps: { emqx: EmqxClient; history: History }) {
  return {
    async takeStatsSnapshot(input: { id: string }): Promise<{ online: number }> {
      const [stats, metrics] = await Promise.all([emqxStep(() => deps.emqx.getStats()), emqxStep(() => deps.emqx.getMetrics())]);
      const snapshot = snapshotFromCounters(input.id, new Date(), stats, metrics);
      await deps.history.stats.save(snapshot);
      return { online: snapshot.online };
    },
  };
}
