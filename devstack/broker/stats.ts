import type { SessionRegistry } from './sessions';

/**
 * `/stats` gauges under EMQX's names (reference §6), each with a `.max` twin holding the peak
 * since start. With only live clean sessions listed, connections, live connections, sessions and
 * channels are the same number.
 */
const GAUGES = [
  'connections',
  'live_connections',
  'sessions',
  'channels',
  'cluster_sessions',
  'subscriptions',
  'subscriptions.shared',
  'suboptions',
  'subscribers',
  'topics',
  'retained',
  'delayed',
] as const;
type Gauge = (typeof GAUGES)[number];

export class BrokerStats {
  private readonly peaks = new Map<Gauge, number>(GAUGES.map((g) => [g, 0]));
  /** Topics holding a retained message; aedes stores the messages, this counts them. */
  private readonly retainedTopics = new Set<string>();

  constructor(private readonly sessions: SessionRegistry) {}

  noteRetained(topic: string, payloadLength: number): void {
    if (payloadLength === 0) this.retainedTopics.delete(topic);
    else this.retainedTopics.add(topic);
    this.observe();
  }

  retainedCount(): number {
    return this.retainedTopics.size;
  }

  /** Call after anything that can move a gauge, so the `.max` twins see every peak. */
  observe(): void {
    for (const [gauge, value] of Object.entries(this.current()) as [Gauge, number][]) {
      if (value > (this.peaks.get(gauge) ?? 0)) this.peaks.set(gauge, value);
    }
  }

  snapshot(): Record<string, number> {
    this.observe();
    const out: Record<string, number> = {};
    for (const [gauge, value] of Object.entries(this.current()) as [Gauge, number][]) {
      out[`${gauge}.count`] = value;
      out[`${gauge}.max`] = this.peaks.get(gauge) ?? value;
    }
    return out;
  }

  private current(): Record<Gauge, number> {
    const connections = this.sessions.count();
    // Offline persistent sessions count as sessions and channels, not as connections.
    const sessions = this.sessions.sessionCount();
    const subscriptions = this.sessions.subscriptionCount();
    return {
      connections,
      live_connections: connections,
      sessions,
      channels: sessions,
      cluster_sessions: sessions,
      subscriptions,
      'subscriptions.shared': 0,
      suboptions: subscriptions,
      subscribers: subscriptions,
      topics: this.sessions.routedFilters().length,
      retained: this.retainedTopics.size,
      delayed: 0,
    };
  }
}
