import type { Aedes, Client, PublishPacket } from 'aedes';
import type { BrokerMetrics } from './metrics';
import { publishPacket } from './publish';
import type { OfflineSession, QueuedMessage, SessionRegistry } from './sessions';

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
