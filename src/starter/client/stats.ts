import type { EmqxClient } from '../../emqx';
import type { History } from '../../store';
import { snapshotFromCounters, type StatsSnapshot } from '../../store/stats';

/**
 * What `device-ops stats` reports: EMQX's live figures (the stored snapshot's, without its id), and
 * message rates against the last snapshot.
 */
export type BrokerStatsReport = Omit<StatsSnapshot, 'id'> & {
  /** Per second, since the latest stored snapshot; null until one exists. */
  rates: (StatsSnapshot['messages'] & { sinceSnapshotAt: string }) | null;
};

export async function currentBrokerStats(deps: { emqx: EmqxClient; history: History }): Promise<BrokerStatsReport> {
  const [stats, metrics, previous] = await Promise.all([deps.emqx.getStats(), deps.emqx.getMetrics(), deps.history.stats.latest()]);
  const now = snapshotFromCounters('now', new Date(), stats, metrics);
  const { id: _id, ...figures } = now;
  return { ...figures, rates: previous ? ratesBetween(previous, now) : null };
}

function ratesBetween(before: StatsSnapshot, after: StatsSnapshot): BrokerStatsReport['rates'] {
  const seconds = Math.max(1, (Date.parse(after.at) - Date.parse(before.at)) / 1000);
  // Counters restart with the node: a negative delta means a restart, so count from zero.
  const rate = (a: number, b: number): number => Math.round(((b >= a ? b - a : b) / seconds) * 100) / 100;
  return {
    received: rate(before.messages.received, after.messages.received),
    sent: rate(before.messages.sent, after.messages.sent),
    dropped: rate(before.messages.dropped, after.messages.dropped),
    sinceSnapshotAt: before.at,
  };
}

const BARS = '▁▂▃▄▅▆▇█';

/** A one-line terminal chart of a series, scaled to its own min..max. */
export function sparkline(values: number[], width = 60): string {
  if (values.length === 0) return '';
  const step = Math.max(1, Math.ceil(values.length / width));
  const sampled: number[] = [];
  for (let i = 0; i < values.length; i += step) sampled.push(Math.max(...values.slice(i, i + step)));
  const min = Math.min(...sampled);
  const max = Math.max(...sampled);
  return sampled.map((v) => BARS[max === min ? 0 : Math.round(((v - min) / (max - min)) * (BARS.length - 1))]).join('');
}

export interface StatsTrend {
  since: string;
  snapshots: number;
  online: { min: number; max: number; last: number; chart: string };
  messagesPerSecond: { received: number[]; sent: number[]; dropped: number[]; chart: string };
}

export function trendOf(snapshots: StatsSnapshot[], since: Date): StatsTrend {
  const online = snapshots.map((s) => s.online);
  const received: number[] = [];
  const sent: number[] = [];
  const dropped: number[] = [];
  for (let i = 1; i < snapshots.length; i++) {
    const r = ratesBetween(snapshots[i - 1]!, snapshots[i]!);
    if (!r) continue;
    received.push(r.received);
    sent.push(r.sent);
    dropped.push(r.dropped);
  }
  return {
    since: since.toISOString(),
    snapshots: snapshots.length,
    online: { min: online.length ? Math.min(...online) : 0, max: online.length ? Math.max(...online) : 0, last: online.at(-1) ?? 0, chart: sparkline(online) },
    messagesPerSecond: { received, sent, dropped, chart: sparkline(received) },
  };
}
