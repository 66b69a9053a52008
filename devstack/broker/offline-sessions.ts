import type { Aedes, Client, PublishPacket } from 'aedes';
import type { BrokerMetrics } from './metrics';
import type { MqttProperties } from './mqtt5';
import { publishPacket } from './publish';
import { subscriptionEvent } from './rule-engine/events';
import type { RuleEngine } from './rule-engine/rule-engine';
import type { OfflineSession, QueueCounts, QueuedMessage, SessionRegistry, SubscriptionOptions } from './sessions';

/**
 * The aedes side of offline persistent sessions. EMQX queues what an offline session's
 * subscriptions match in the session itself (QoS 1/2, and QoS 0 while `mqueue_store_qos0`), up to
 * `max_mqueue_len`, and delivers the queue when the client resumes the session
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `handle_deliver/2` for
 * a disconnected channel). aedes would queue QoS 1/2 only, without a limit, in its persistence;
 * so the session registry queues instead, and aedes' own queue is kept for connected clients,
 * where it tracks in-flight messages (unacknowledged ones are sent again on resume, as EMQX's
 * inflight window is).
 */

/** aedes' persistence (not in aedes' types): the calls used here. */
interface Persistence {
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void>;
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  addSubscriptions(client: { id: string }, subs: { topic: string; qos: number; nl: boolean; rap: boolean; rh: number }[]): Promise<unknown>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<unknown>;
  createRetainedStreamCombi(patterns: string[]): AsyncIterable<PublishPacket>;
  outgoingStream(client: { id: string }): AsyncIterable<PublishPacket>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
}

function persistenceOf(aedes: Aedes): Persistence {
  return (aedes as unknown as { persistence: Persistence }).persistence;
}

function isConnected(aedes: Aedes, clientid: string): boolean {
  return (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientid] !== undefined;
}

/** Leaves the queuing of messages for offline sessions to the session registry. */
export function keepAedesQueueForConnectedClients(aedes: Aedes): void {
  const persistence = persistenceOf(aedes);
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence);
  persistence.outgoingEnqueueCombi = (subs, packet) => enqueue(subs.filter((sub) => isConnected(aedes, sub.clientId)), packet);
}

/**
 * Ends a session for good: its subscriptions stored by aedes (restored on the next
 * `clean_session=false` connect otherwise) and the messages aedes still holds in flight for it.
 */
export async function discardPersistedSession(aedes: Aedes, clientid: string): Promise<void> {
  const persistence = persistenceOf(aedes);
  const client = { id: clientid };
  await persistence.cleanSubscriptions(client);
  const inflight: PublishPacket[] = [];
  for await (const packet of persistence.outgoingStream(client)) inflight.push(packet);
  for (const packet of inflight) await persistence.outgoingClearMessageId(client, packet);
}

/** `DELETE /clients/{id}` of an offline session: discarded with its queue; false if there is none. */
export async function discardOfflineSession(aedes: Aedes, sessions: SessionRegistry, metrics: BrokerMetrics, clientid: string): Promise<boolean> {
  const session = sessions.takeOffline(clientid);
  if (!session) return false;
  metrics.inc('session.terminated');
  await discardPersistedSession(aedes, clientid);
  return true;
}

/** What REST subscribe and unsubscribe on behalf of an offline session work on. */
export interface OfflineSubscriptionDeps {
  aedes: Aedes;
  sessions: SessionRegistry;
  metrics: BrokerMetrics;
  ruleEngine: RuleEngine;
}

/**
 * `POST /clients/{id}/subscribe[/bulk]` for an offline session. In EMQX the channel of a
 * disconnected session stays registered until the session expires, so the API finds it and
 * subscribes its session like a connected one's
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt.erl `do_subscribe/2`,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `handle_info({subscribe, ...})`):
 * `session.subscribed` fires, what the filter matches from now on is queued, and so are the
 * retained messages it matches (Retain Handling 0, or 1 for a new filter), as the retainer
 * sends them on `session.subscribed`. The subscription is stored where aedes restores a resumed
 * session's subscriptions from.
 */
export async function subscribeOffline(deps: OfflineSubscriptionDeps, session: OfflineSession, topic: string, options: SubscriptionOptions): Promise<void> {
  const isNew = !session.subscriptions.has(topic);
  session.subscriptions.set(topic, options);
  await persistenceOf(deps.aedes).addSubscriptions({ id: session.clientid }, [
    { topic, qos: options.qos, nl: options.nl === 1, rap: options.rap === 1, rh: options.rh },
  ]);
  deps.ruleEngine.fireEvent('$events/session_subscribed', subscriptionEvent('subscribed', session, { topic, qos: options.qos }));
  if (options.rh === 2 || (options.rh === 1 && !isNew)) return;
  for await (const retained of persistenceOf(deps.aedes).createRetainedStreamCombi([topic])) {
    const payload = Buffer.isBuffer(retained.payload) ? retained.payload : Buffer.from(retained.payload);
    const properties = retained.properties as MqttProperties | undefined;
    const message: QueuedMessage = { topic: retained.topic, payload, qos: retained.qos, retain: true, ...(properties ? { properties } : {}) };
    countDropped(deps.metrics, deps.sessions.enqueueRetained(session, message, options.qos));
  }
}

/** `POST /clients/{id}/unsubscribe[/bulk]` for an offline session (see subscribeOffline). */
export async function unsubscribeOffline(deps: OfflineSubscriptionDeps, session: OfflineSession, topic: string): Promise<void> {
  const previous = session.subscriptions.get(topic);
  session.subscriptions.delete(topic);
  await persistenceOf(deps.aedes).removeSubscriptions({ id: session.clientid }, [topic]);
  if (previous) deps.ruleEngine.fireEvent('$events/session_unsubscribed', subscriptionEvent('unsubscribed', session, { topic, qos: previous.qos }));
}

/** `delivery.dropped` and its reason for the copies a queue could not take. */
export function countDropped(metrics: BrokerMetrics, counts: QueueCounts): void {
  for (let i = 0; i < counts.droppedQueueFull; i++) {
    metrics.inc('delivery.dropped');
    metrics.inc('delivery.dropped.queue_full');
  }
  for (let i = 0; i < counts.droppedQos0; i++) {
    metrics.inc('delivery.dropped');
    metrics.inc('delivery.dropped.qos0_msg');
  }
}

/**
 * Sends a resumed session's queue to its new connection, oldest first; messages whose expiry
 * passed while queued are dropped (emqx_session_mem `dequeue/2`).
 */
export function deliverQueued(client: Client, session: OfflineSession, metrics: BrokerMetrics, now = Date.now()): void {
  for (const message of session.mqueue) {
    if (message.expiresAt !== undefined && message.expiresAt <= now) {
      metrics.inc('delivery.dropped');
      metrics.inc('delivery.dropped.expired');
      continue;
    }
    client.publish(toPacket(message, now), () => undefined);
  }
}

/**
 * The PUBLISH for a queued message. Its Message-Expiry-Interval says what is left of it, at least
 * 1 second (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_message.erl `update_expiry/1`).
 */
function toPacket(message: QueuedMessage, now: number): PublishPacket {
  const properties =
    message.properties && message.expiresAt !== undefined
      ? { ...message.properties, messageExpiryInterval: Math.max(1, Math.ceil((message.expiresAt - now) / 1000)) }
      : message.properties;
  return publishPacket({ ...message, properties });
}
