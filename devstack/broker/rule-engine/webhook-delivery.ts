import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { request, type Dispatcher } from 'undici';
import type { FaultSwitchboard } from '../faults';
import { joinUrl, type WebhookTarget } from './http-resources';
import { renderBody, renderTemplate } from './template';

/**
 * Asynchronous delivery of rule-engine events for one HTTP action, with EMQX's semantics
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl): one
 * event per request (the HTTP action has no batching: emqx_bridge_http_schema.erl removes batch_size and
 * batch_time from its resource_opts); any 2xx is success; 429, 503 and connection errors are retried up to
 * `max_retries` within `request_ttl`; other statuses fail permanently. Up to `inflight_window` requests run
 * at once (EMQX has `worker_pool_size` buffer workers with a window each; this broker has one), the rest
 * wait in a queue. Requests go out over the connector's connections as EMQX sends them (HttpConnectionPool:
 * `pool_size` connections, pipelined). Injected faults drop, duplicate or reorder deliveries, as real EMQX
 * sometimes does.
 */

/** EMQX action metric names (`GET /actions/{id}/metrics`), plus `duplicated` for injected copies. */
export interface ActionMetrics {
  matched: number;
  success: number;
  failed: number;
  dropped: number;
  'dropped.expired': number;
  'dropped.queue_full': number;
  'dropped.resource_stopped': number;
  'dropped.resource_not_found': number;
  'dropped.other': number;
  retried: number;
  'retried.success': number;
  'retried.failed': number;
  queuing: number;
  inflight: number;
  received: number;
  late_reply: number;
  duplicated: number;
}

/** How long the receiver took to answer, from a request's headers on the wire to the response's (devstack-only figure). */
export interface AnswerTimes {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Answer times at 1 ms resolution; 10 s and over share the last slot. */
class AnswerHistogram {
  private readonly counts = new Uint32Array(10_001);
  private total = 0;
  private max = 0;

  record(ms: number): void {
    const slot = Math.min(this.counts.length - 1, Math.max(0, Math.ceil(ms)));
    this.counts[slot] = (this.counts[slot] ?? 0) + 1;
    this.total++;
    this.max = Math.max(this.max, ms);
  }

  summary(): AnswerTimes {
    return { count: this.total, p50Ms: this.atMost(0.5), p99Ms: this.atMost(0.99), maxMs: Math.round(this.max * 10) / 10 };
  }

  /** The smallest whole millisecond that `share` of the answers took at most. */
  private atMost(share: number): number {
    let seen = 0;
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms] ?? 0;
      if (seen >= share * this.total && seen > 0) return ms;
    }
    return 0;
  }
}

/** Times each request on the wire: undici calls onRequestStart as it writes the request to its connection. */
class AnswerTimer implements Dispatcher.DispatchHandler {
  private sentAt = 0;

  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly record: (ms: number) => void,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.sentAt = performance.now();
    this.inner.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>): void {
    this.inner.onRequestUpgrade?.(...args);
  }

  onResponseStart(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>): void {
    this.record(performance.now() - this.sentAt);
    this.inner.onResponseStart?.(...args);
  }

  onResponseData(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseData']>>): void {
    this.inner.onResponseData?.(...args);
  }

  onResponseEnd(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>): void {
    this.inner.onResponseEnd?.(...args);
  }

  onResponseError(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseError']>>): void {
    this.inner.onResponseError?.(...args);
  }
}

interface QueuedEvent {
  body: Record<string, unknown>;
  enqueuedAt: number;
}

type Outcome = 'success' | 'retryable' | 'permanent' | 'aborted';

const MAX_QUEUE_LENGTH = 100_000;
const REORDER_GATHER_MS = 25;

export class WebhookDeliveryQueue {
  private readonly queue: QueuedEvent[] = [];
  private inflight = 0;
  private counters = emptyCounters();
  private answers = new AnswerHistogram();
  private readonly timedDispatchers = new WeakMap<Dispatcher, Dispatcher>();
  private pumpScheduled = false;
  private readonly stopController = new AbortController();

  constructor(
    private readonly actionId: string,
    private readonly resolveTarget: () => WebhookTarget | undefined,
    private readonly deps: {
      /** The connection that carries one request of `clientid` (HttpConnectionPool.pick). */
      dispatcherFor: (target: WebhookTarget, clientid: string) => Dispatcher;
      faults: FaultSwitchboard;
      logger: Logger;
    },
  ) {
    // Every request in flight listens on the one stop signal; more than 10 is normal, not a leak.
    setMaxListeners(Number.POSITIVE_INFINITY, this.stopController.signal);
  }

  enqueue(body: Record<string, unknown>): void {
    if (this.stopController.signal.aborted) return;
    this.counters.matched++;
    const target = this.resolveTarget();
    if (!target) return this.countDrop('dropped.resource_not_found');
    if (!target.enabled) return this.countDrop('dropped.resource_stopped');
    if (this.deps.faults.shouldDropWebhook()) return this.countDrop('dropped.other');
    const copies = this.deps.faults.shouldDuplicateWebhook() ? 2 : 1;
    if (copies === 2) this.counters.duplicated++;
    for (let i = 0; i < copies; i++) {
      if (this.queue.length >= MAX_QUEUE_LENGTH) {
        this.countDrop('dropped.queue_full');
        continue;
      }
      this.queue.push({ body, enqueuedAt: Date.now() });
    }
    this.schedulePump();
  }

  metrics(): ActionMetrics {
    return { ...this.counters, queuing: this.queue.length, inflight: this.inflight };
  }

  /** Answer times of the requests sent since the start or the last resetMetrics. */
  answerTimes(): AnswerTimes {
    return this.answers.summary();
  }

  resetMetrics(): void {
    this.counters = emptyCounters();
    this.answers = new AnswerHistogram();
  }

  /** Stops delivery: queued events are discarded and in-flight requests aborted. */
  stop(): void {
    this.stopController.abort();
    this.queue.length = 0;
  }

  private countDrop(reason: 'dropped.expired' | 'dropped.queue_full' | 'dropped.resource_stopped' | 'dropped.resource_not_found' | 'dropped.other'): void {
    this.counters.dropped++;
    this.counters[reason]++;
  }

  /** With reordering on, waits briefly so events fired together are shuffled together. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    const run = (): void => {
      this.pumpScheduled = false;
      this.pump();
    };
    if (this.deps.faults.get().webhookReorder) setTimeout(run, REORDER_GATHER_MS).unref();
    else setImmediate(run);
  }

  private pump(): void {
    if (this.stopController.signal.aborted) return;
    const window = this.resolveTarget()?.inflightWindow ?? 1;
    const free = Math.max(0, window - this.inflight);
    const batch = this.queue.splice(0, free);
    if (this.deps.faults.get().webhookReorder) this.deps.faults.shuffle(batch);
    for (const item of batch) {
      this.inflight++;
      void this.deliver(item)
        .catch((err: unknown) => this.deps.logger.error({ err, action: this.actionId }, 'webhook delivery crashed'))
        .finally(() => {
          this.inflight--;
          if (this.queue.length > 0) this.schedulePump();
        });
    }
  }

  private async deliver(item: QueuedEvent): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const target = this.resolveTarget();
      if (!target) return this.countDrop('dropped.resource_not_found');
      if (Date.now() - item.enqueuedAt > target.requestTtlMs) return this.countDrop('dropped.expired');
      const outcome = await this.send(target, item.body);
      if (outcome === 'aborted') return;
      if (outcome === 'success') {
        this.counters.success++;
        if (attempt > 0) this.counters['retried.success']++;
        return;
      }
      if (outcome === 'permanent' || attempt >= target.maxRetries) {
        this.counters.failed++;
        if (attempt > 0) this.counters['retried.failed']++;
        return;
      }
      this.counters.retried++;
      const waited = await delay(retryBackoffMs(attempt), true, { signal: this.stopController.signal }).catch(() => false);
      if (!waited) return;
    }
  }

  private timed(dispatcher: Dispatcher): Dispatcher {
    let timed = this.timedDispatchers.get(dispatcher);
    if (!timed) {
      timed = dispatcher.compose((dispatch) => (options, handler) => dispatch(options, new AnswerTimer(handler, (ms) => this.answers.record(ms))));
      this.timedDispatchers.set(dispatcher, timed);
    }
    return timed;
  }

  private async send(target: WebhookTarget, event: Record<string, unknown>): Promise<Outcome> {
    const url = joinUrl(target.baseUrl, renderTemplate(target.path, event));
    const headers = Object.fromEntries(Object.entries(target.headers).map(([k, v]) => [k, renderTemplate(v, event)]));
    try {
      const response = await request(url, {
        method: target.method.toUpperCase(),
        headers,
        body: target.method === 'get' ? undefined : renderBody(target.bodyTemplate, event),
        dispatcher: this.timed(this.deps.dispatcherFor(target, typeof event.clientid === 'string' ? event.clientid : '')),
        // undici pipelines only requests it may resend; EMQX's ehttpc pipelines every request.
        idempotent: true,
        blocking: false,
        headersTimeout: target.requestTimeoutMs,
        bodyTimeout: target.requestTimeoutMs,
        signal: this.stopController.signal,
      });
      await response.body.dump();
      const status = response.statusCode;
      if (status >= 200 && status < 300) return 'success';
      this.deps.logger.debug({ action: this.actionId, status }, 'webhook rejected');
      return status === 429 || status === 503 ? 'retryable' : 'permanent';
    } catch (err) {
      if (this.stopController.signal.aborted) return 'aborted';
      this.deps.logger.debug({ action: this.actionId, err: (err as Error).message }, 'webhook request failed');
      return 'retryable';
    }
  }
}

/** Short exponential backoff (100 ms, 200 ms, ... capped at 2 s): fast enough for tests. */
function retryBackoffMs(attempt: number): number {
  return Math.min(2_000, 100 * 2 ** attempt);
}

function emptyCounters(): ActionMetrics {
  return {
    matched: 0,
    success: 0,
    failed: 0,
    dropped: 0,
    'dropped.expired': 0,
    'dropped.queue_full': 0,
    'dropped.resource_stopped': 0,
    'dropped.resource_not_found': 0,
    'dropped.other': 0,
    retried: 0,
    'retried.success': 0,
    'retried.failed': 0,
    queuing: 0,
    inflight: 0,
    received: 0,
    late_reply: 0,
    duplicated: 0,
  };
}
