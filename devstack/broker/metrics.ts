/**
 * Counters since node start, under EMQX's metric names
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_metrics.erl). Only the
 * ones this broker can really observe move; the rest are present and stay 0 so clients see EMQX's key set.
 */
export const METRIC_NAMES = [
  'messages.received',
  'messages.sent',
  'messages.publish',
  'messages.dropped',
  'messages.dropped.no_subscribers',
  'messages.dropped.await_pubrel_timeout',
  'messages.delivered',
  'messages.acked',
  'messages.forward',
  'messages.delayed',
  'messages.persisted',
  'messages.retained',
  'messages.qos0.received',
  'messages.qos1.received',
  'messages.qos2.received',
  'messages.qos0.sent',
  'messages.qos1.sent',
  'messages.qos2.sent',
  'delivery.dropped',
  'delivery.dropped.no_local',
  'delivery.dropped.too_large',
  'delivery.dropped.qos0_msg',
  'delivery.dropped.queue_full',
  'delivery.dropped.expired',
  'client.connect',
  'client.connack',
  'client.connected',
  'client.disconnected',
  'client.authenticate',
  'client.auth.anonymous',
  'client.authorize',
  'client.subscribe',
  'client.unsubscribe',
  'session.created',
  'session.resumed',
  'session.takenover',
  'session.discarded',
  'session.terminated',
  'authentication.success',
  'authentication.success.anonymous',
  'authentication.failure',
  'authorization.allow',
  'authorization.deny',
  'authorization.superuser',
  'authorization.cache_hit',
  'authorization.cache_miss',
  'packets.publish.auth_error',
  'bytes.received',
  'bytes.sent',
] as const;

export type MetricName = (typeof METRIC_NAMES)[number];

export class BrokerMetrics {
  private readonly counters = new Map<MetricName, number>(METRIC_NAMES.map((name) => [name, 0]));

  inc(name: MetricName, by = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + by);
  }

  /**
   * A message that entered the broker: `messages.received` and its QoS twin, as emqx_metrics.erl
   * `inc_msg/1` counts it, for MQTT PUBLISHes and REST publishes (emqx_mgmt.erl `publish/1`) alike.
   */
  countReceivedMessage(qos: number): void {
    this.inc('messages.received');
    this.inc(qos === 2 ? 'messages.qos2.received' : qos === 1 ? 'messages.qos1.received' : 'messages.qos0.received');
  }

  value(name: MetricName): number {
    return this.counters.get(name) ?? 0;
  }

  snapshot(): Record<MetricName, number> {
    return Object.fromEntries(this.counters) as Record<MetricName, number>;
  }
}

interface RateSample {
  at: number;
  received: number;
  sent: number;
  dropped: number;
}

/**
 * Message rates for `/monitor_current`, per second over roughly the last 10 s (EMQX computes `delta * 1000 /
 * ms` in https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_dashboard/src/emqx_dashboard_monitor.erl).
 */
export class MessageRateSampler {
  private readonly samples: RateSample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly metrics: BrokerMetrics) {
    this.takeSample();
    this.timer = setInterval(() => this.takeSample(), 1_000);
    this.timer.unref();
  }

  rates(): { received_msg_rate: number; sent_msg_rate: number; dropped_msg_rate: number } {
    const oldest = this.samples[0];
    const now = this.current();
    const elapsedSec = oldest ? (now.at - oldest.at) / 1_000 : 0;
    if (!oldest || elapsedSec <= 0) return { received_msg_rate: 0, sent_msg_rate: 0, dropped_msg_rate: 0 };
    const perSecond = (delta: number): number => Math.round(delta / elapsedSec);
    return {
      received_msg_rate: perSecond(now.received - oldest.received),
      sent_msg_rate: perSecond(now.sent - oldest.sent),
      dropped_msg_rate: perSecond(now.dropped - oldest.dropped),
    };
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private takeSample(): void {
    this.samples.push(this.current());
    if (this.samples.length > 10) this.samples.shift();
  }

  private current(): RateSample {
    return {
      at: Date.now(),
      received: this.metrics.value('messages.received'),
      sent: this.metrics.value('messages.sent'),
      dropped: this.metrics.value('messages.dropped'),
    };
  }
}
