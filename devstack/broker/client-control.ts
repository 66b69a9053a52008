import type { Aedes, Client, Subscription } from 'aedes';
import type { LiveSession, SessionRegistry, SubscriptionOptions } from './sessions';

/**
 * What the REST API does to a live session: kick it, subscribe or unsubscribe on its behalf
 * (reference §4.3-4.5). Proxy subscriptions go through aedes' normal subscribe path, so they
 * are checked by `authorizeSubscribe`, fire `session.subscribed`, deliver retained messages and
 * then deliver every matching message to the client.
 */

/** aedes' subscription store (not in aedes' types), used to end persistent sessions. */
interface SessionPersistence {
  cleanSubscriptions?(client: Client): Promise<unknown>;
  removeSubscriptions?(client: Client, topics: string[]): Promise<unknown>;
}

function persistenceOf(aedes: Aedes): SessionPersistence | undefined {
  return (aedes as unknown as { persistence?: SessionPersistence }).persistence;
}

/** Disconnects the client with reason `kicked` and ends its session; false if not connected. */
export async function kickClient(aedes: Aedes, sessions: SessionRegistry, clientid: string): Promise<boolean> {
  const session = sessions.get(clientid);
  if (!session) return false;
  sessions.markDisconnectReason(clientid, 'kicked');
  const client = session.client;
  await new Promise<void>((resolve) => client.close(() => resolve()));
  if (!client.clean) await persistenceOf(aedes)?.cleanSubscriptions?.(client);
  return true;
}

export async function subscribeOnBehalf(session: LiveSession, topic: string, options: SubscriptionOptions): Promise<void> {
  const subscription: Subscription = {
    topic,
    qos: options.qos as Subscription['qos'],
    nl: options.nl === 1,
    rap: options.rap === 1,
    rh: options.rh,
  };
  await new Promise<void>((resolve, reject) => session.client.subscribe(subscription, (err) => (err ? reject(err) : resolve())));
}

export async function unsubscribeOnBehalf(aedes: Aedes, session: LiveSession, topic: string): Promise<void> {
  const client = session.client;
  // aedes' Client.unsubscribe takes topic strings although its types say Subscription.
  const topics = [topic] as unknown as Subscription[];
  await new Promise<void>((resolve, reject) => client.unsubscribe(topics, (err) => (err ? reject(err) : resolve())));
  if (!client.clean) await persistenceOf(aedes)?.removeSubscriptions?.(client, [topic]);
}
