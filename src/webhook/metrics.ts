/**
 * The adapter's Prometheus metrics (text exposition format 0.0.4), kept by hand: a handful of
 * counters, one gauge and one histogram do not need a library. Label values come from fixed sets
 * (never from request data), so a hostile sender cannot grow the label space.
 */

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export type RejectReason = 'unauthorized' | 'invalid_event' | 'bad_json' | 'too_large' | 'unsupported_media_type' | 'unavailable' | 'not_found';

export class WebhookMetrics {
  readonly received = new Map<string, number>();
  stored = 0;
  duplicates = 0;
  ignored = 0;
  signalled = 0;
  signalFailures = 0;
  /** Batches Temporal refused as such, sent again in halves. */
  batchesSplit = 0;
  /** Events Temporal refused on their own, recorded in the dead-letter collection. */
  deadLettered = 0;
  readonly rejected = new Map<RejectReason, number>();
  private readonly buckets = DURATION_BUCKETS.map(() => 0);
  private durationCount = 0;
  private durationSum = 0;

  countReceived(eventName: string, knownNames: readonly string[]): void {
    const label = knownNames.includes(eventName) ? eventName : 'other';
    this.received.set(label, (this.received.get(label) ?? 0) + 1);
  }

  countRejected(reason: RejectReason): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  observeDuration(seconds: number): void {
    this.durationCount++;
    this.durationSum += seconds;
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.buckets[i] = (this.buckets[i] ?? 0) + 1;
    });
  }

  /** The relay's current limit on signals in flight (see SignalThrottle). */
  signalLimit = 0;

  render(gauges: { inboxDepth: number; temporalUp: boolean; repliesUnapplied: number }): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family('device_ops_webhook_events_received_total', 'counter', 'EMQX events received in accepted requests, by event type');
    for (const [event, n] of this.received) lines.push(`device_ops_webhook_events_received_total{event="${event}"} ${n}`);
    family('device_ops_webhook_events_stored_total', 'counter', 'events stored in MongoDB for the first time');
    lines.push(`device_ops_webhook_events_stored_total ${this.stored}`);
    family('device_ops_webhook_events_duplicate_total', 'counter', 'events already stored (EMQX retries and duplicates)');
    lines.push(`device_ops_webhook_events_duplicate_total ${this.duplicates}`);
    family('device_ops_webhook_events_ignored_total', 'counter', 'events of a type the adapter does not use, accepted and counted');
    lines.push(`device_ops_webhook_events_ignored_total ${this.ignored}`);
    family('device_ops_webhook_events_signalled_total', 'counter', 'connect/disconnect events delivered to device workflows');
    lines.push(`device_ops_webhook_events_signalled_total ${this.signalled}`);
    family('device_ops_webhook_signal_failures_total', 'counter', 'signal-with-start calls that failed (the events stay in the inbox)');
    lines.push(`device_ops_webhook_signal_failures_total ${this.signalFailures}`);
    family('device_ops_webhook_signal_batches_split_total', 'counter', 'signals Temporal refused for their content, sent again in halves');
    lines.push(`device_ops_webhook_signal_batches_split_total ${this.batchesSplit}`);
    family('device_ops_webhook_events_dead_lettered_total', 'counter', 'events Temporal refused on their own, set aside in presence_dead_letters');
    lines.push(`device_ops_webhook_events_dead_lettered_total ${this.deadLettered}`);
    family('device_ops_webhook_requests_rejected_total', 'counter', 'requests answered 4xx or 503, by reason');
    for (const [reason, n] of this.rejected) lines.push(`device_ops_webhook_requests_rejected_total{reason="${reason}"} ${n}`);
    family('device_ops_webhook_inbox_depth', 'gauge', 'connect/disconnect events stored but not yet signalled');
    lines.push(`device_ops_webhook_inbox_depth ${gauges.inboxDepth}`);
    family('device_ops_webhook_replies_unapplied', 'gauge', 'device replies stored and not yet applied by this adapter');
    lines.push(`device_ops_webhook_replies_unapplied ${gauges.repliesUnapplied}`);
    family('device_ops_webhook_temporal_up', 'gauge', '1 when the last signal-with-start succeeded');
    lines.push(`device_ops_webhook_temporal_up ${gauges.temporalUp ? 1 : 0}`);
    family('device_ops_webhook_signal_limit', 'gauge', 'signal-with-start calls allowed at once right now (lower while answers are slow)');
    lines.push(`device_ops_webhook_signal_limit ${this.signalLimit}`);
    family('device_ops_webhook_request_duration_seconds', 'histogram', 'POST /emqx/events response time');
    DURATION_BUCKETS.forEach((bound, i) => lines.push(`device_ops_webhook_request_duration_seconds_bucket{le="${bound}"} ${this.buckets[i] ?? 0}`));
    lines.push(`device_ops_webhook_request_duration_seconds_bucket{le="+Inf"} ${this.durationCount}`);
    lines.push(`device_ops_webhook_request_duration_seconds_sum ${this.durationSum}`);
    lines.push(`device_ops_webhook_request_duration_seconds_count ${this.durationCount}`);
    return `${lines.join('\n')}\n`;
  }
}
