import type { Aedes } from 'aedes';
import type { SessionRegistry } from './sessions';

/**
 * `/stats` gauges under EMQX's names
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_stats.erl), each with a
 * `.max` twin holding the peak since start. With only live clean sessions listed, connections, live
 * connections, sessions and channels are the same number.
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
      topics: this.sessions.routedFilterCount(),
      retained: this.retainedTopics.size,
      delayed: 0,
    };
  }
}

/** Bytes and MQTT packets through one connection: the clients API's `recv_oct`, `recv_pkt`, `send_oct`, `send_pkt`. */
export interface TrafficCounters {
  recv_oct: number;
  recv_pkt: number;
  send_oct: number;
  send_pkt: number;
}

/** Counts whole MQTT packets in a byte stream from their fixed headers (type byte, remaining length). */
class PacketCounter {
  count = 0;
  private stage: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private left = 0;

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.stage === 'type') {
        i++;
        [this.stage, this.length, this.multiplier] = ['length', 0, 1];
      } else if (this.stage === 'length') {
        const byte = chunk[i++] ?? 0;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        if ((byte & 0x80) !== 0) continue;
        this.left = this.length;
        this.stage = 'body';
        if (this.left === 0) this.packetDone();
      } else {
        const take = Math.min(this.left, chunk.length - i);
        i += take;
        this.left -= take;
        if (this.left === 0) this.packetDone();
      }
    }
  }

  private packetDone(): void {
    this.count++;
    this.stage = 'type';
  }
}

interface InstrumentedClient {
  conn: { write: (chunk: unknown, ...rest: unknown[]) => boolean };
  _parser: { parse: (buf: Buffer) => unknown; on: (event: 'packet', listener: () => void) => unknown };
}

const trafficByClient = new WeakMap<object, { counters: TrafficCounters; sent: PacketCounter }>();

/**
 * Counts every connection's traffic from the moment aedes takes it: received bytes and packets at
 * aedes' MQTT parser, sent ones at the connection's `write` (emqx_connection.erl keeps the same four
 * counters per connection).
 */
export function countClientTraffic(aedes: Aedes): void {
  const handle = aedes.handle.bind(aedes);
  aedes.handle = (stream, req) => {
    const client = handle(stream, req);
    const instrumented = client as unknown as InstrumentedClient;
    const entry = { counters: { recv_oct: 0, recv_pkt: 0, send_oct: 0, send_pkt: 0 }, sent: new PacketCounter() };
    trafficByClient.set(client, entry);
    const parser = instrumented._parser;
    const parse = parser.parse.bind(parser);
    parser.parse = (buf) => {
      entry.counters.recv_oct += buf.length;
      return parse(buf);
    };
    parser.on('packet', () => entry.counters.recv_pkt++);
    const conn = instrumented.conn;
    const write = conn.write.bind(conn);
    conn.write = (chunk: unknown, ...rest: unknown[]) => {
      // mqtt-packet writes a packet in pieces, topic names as strings (writeToStream.js writeString).
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk instanceof Uint8Array ? chunk : undefined;
      if (bytes) {
        entry.counters.send_oct += bytes.length;
        entry.sent.feed(bytes);
        entry.counters.send_pkt = entry.sent.count;
      }
      return write(chunk, ...rest);
    };
    return client;
  };
}

export function trafficOf(client: object): TrafficCounters {
  return { ...(trafficByClient.get(client)?.counters ?? { recv_oct: 0, recv_pkt: 0, send_oct: 0, send_pkt: 0 }) };
}
