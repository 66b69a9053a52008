import type { Aedes, Client, Subscription } from 'aedes';
import { REASON_CODE } from './mqtt5';
import { subscribeOffline, unsubscribeOffline, type OfflineSubscriptionDeps } from './offline-sessions';
import type { LiveSession, OfflineSession, SessionRegistry, SubscriptionOptions } from './sessions';

/**
 * What the REST API does to a session: kick it, subscribe or unsubscribe on its behalf. For a
 * connected client, proxy subscriptions go through aedes' normal subscribe path, so they fire
 * `session.subscribed`, deliver retained messages and then every matching message to the client;
 * an offline session is subscribed in its stored state (offline-sessions.ts). Like EMQX they are
 * not authorized: the channel takes `{subscribe, TopicFilters}` straight to
 * `post_process_subscribe/2`, without `check_sub_authzs/2`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `handle_info/2`), so
 * `authorizeSubscribe` lets every subscription marked here through.
 */

/**
 * The session a call on a client's behalf acts on: the connected client's, else its offline
 * session, as EMQX's channel table holds both (emqx_cm.erl `get_sessions_count/0`).
 */
export type ProxyTarget = { live: LiveSession } | { offline: OfflineSession };

export function proxyTargetOf(sessions: SessionRegistry, clientid: string): ProxyTarget | undefined {
  const live = sessions.get(clientid);
  if (live && !live.client.closed) return { live };
  const offline = sessions.getOffline(clientid);
  return offline ? { offline } : undefined;
}

export type ProxyDeps = OfflineSubscriptionDeps;

const proxySubscriptions = new WeakSet<Subscription>();

/** Whether aedes is authorizing a subscription the REST API made on a client's behalf. */
export function isProxySubscription(subscription: Subscription): boolean {
  return proxySubscriptions.has(subscription);
}

/** `Client ID not found` for a subscription whose client left before its turn (emqx_mgmt.erl `subscribe/3`). */
export const CHANNEL_NOT_FOUND = 'channel_not_found';
/** `no_local` on a shared subscription ([MQTT-3.8.3-4]); emqx_topic.erl `parse/2`. */
export const INVALID_SUBOPTS_NL = 'invalid_subopts_nl';

/**
 * Why `emqx_topic:parse/2` refuses a filter with these options, as EMQX prints the reason (`~p`),
 * or `undefined` when it accepts it (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_topic.erl):
 * a `$share/` filter needs a group without wildcards and a topic, neither `$queue/` nor `$share/`
 * may follow the group, an `$exclusive/` filter needs a topic, and `nl` is refused on shared ones.
 */
export function proxySubscribeRefusal(topic: string, nl: number): string | undefined {
  const invalid = (filter: string): string => `{invalid_topic_filter,<<${JSON.stringify(filter)}>>}`;
  let shared: string | undefined;
  if (topic.startsWith('$queue/')) shared = topic.slice('$queue/'.length);
  else if (topic.startsWith('$share/')) {
    const rest = topic.slice('$share/'.length);
    const slash = rest.indexOf('/');
    if (slash < 0 || /[+#]/.test(rest.slice(0, slash))) return invalid(topic);
    shared = rest.slice(slash + 1);
  } else if (topic === '$exclusive/') return invalid(topic);
  if (shared === undefined) return undefined;
  if (shared.startsWith('$queue/') || shared.startsWith('$share/')) return invalid(shared);
  return nl === 1 ? INVALID_SUBOPTS_NL : undefined;
}

/** aedes' subscription store (not in aedes' types), used to end persistent sessions. */
interface SessionPersistence {
  cleanSubscriptions?(client: Client): Promise<unknown>;
  removeSubscriptions?(client: Client, topics: string[]): Promise<unknown>;
}

function persistenceOf(aedes: Aedes): SessionPersistence | undefined {
  return (aedes as unknown as { persistence?: SessionPersistence }).persistence;
}

/**
 * Disconnects the client with reason `kicked` and ends its session; false if not connected. An
 * MQTT 5 client is sent DISCONNECT 0x98, administrative action
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `process_kick/1`).
 */
export async function kickClient(aedes: Aedes, sessions: SessionRegistry, clientid: string): Promise<boolean> {
  const session = sessions.get(clientid);
  if (!session) return false;
  sessions.markDisconnectReason(clientid, 'kicked');
  const client = session.client;
  await new Promise<void>((resolve) => client.disconnect({ reasonCode: REASON_CODE.ADMINISTRATIVE_ACTION }, () => resolve()));
  if (!client.clean) await persistenceOf(aedes)?.cleanSubscriptions?.(client);
  return true;
}

export async function subscribeOnBehalf(deps: ProxyDeps, target: ProxyTarget, topic: string, options: SubscriptionOptions): Promise<void> {
  if ('offline' in target) return subscribeOffline(deps, target.offline, topic, options);
  const session = target.live;
  const subscription: Subscription = {
    topic,
    qos: options.qos as Subscription['qos'],
    nl: options.nl === 1,
    rap: options.rap === 1,
    rh: options.rh,
  };
  proxySubscriptions.add(subscription);
  await new Promise<void>((resolve, reject) => session.client.subscribe(subscription, (err) => (err ? reject(err) : resolve())));
}

export interface ProxySubscription extends SubscriptionOptions {
  topic: string;
}

/**
 * `POST /clients/{id}/subscribe/bulk` past the client lookup: each topic in turn, sent to the
 * client's session as it is at that moment (like EMQX's per-topic channel lookup, `do_subscribe/3`),
 * with the answer of `emqx_mgmt_util:batch_operation/3`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_util.erl):
 * the list of subscriptions when all succeeded, else `{succeed, failed}` with each failure's
 * `data` the call's arguments `[ClientID, Topic, Opts]`, failures listed last first.
 */
export async function subscribeBatchOnBehalf(
  deps: ProxyDeps,
  clientid: string,
  subscriptions: readonly ProxySubscription[],
  node: string,
): Promise<unknown> {
  const succeed: Record<string, unknown>[] = [];
  const failed: { data: [string, string, SubscriptionOptions]; reason: string }[] = [];
  for (const { topic, ...options } of subscriptions) {
    const target = proxyTargetOf(deps.sessions, clientid);
    const reason = target ? proxySubscribeRefusal(topic, options.nl) : CHANNEL_NOT_FOUND;
    if (target && reason === undefined) {
      await subscribeOnBehalf(deps, target, topic, options);
      succeed.push({ ...options, node, clientid, topic });
    } else {
      failed.unshift({ data: [clientid, topic, options], reason: reason ?? CHANNEL_NOT_FOUND });
    }
  }
  return failed.length === 0 ? succeed : { succeed, failed };
}

export async function unsubscribeOnBehalf(deps: ProxyDeps, target: ProxyTarget, topic: string): Promise<void> {
  if ('offline' in target) return unsubscribeOffline(deps, target.offline, topic);
  const { aedes } = deps;
  const client = target.live.client;
  // aedes' Client.unsubscribe takes topic strings although its types say Subscription.
  const topics = [topic] as unknown as Subscription[];
  await new Promise<void>((resolve, reject) => client.unsubscribe(topics, (err) => (err ? reject(err) : resolve())));
  if (!client.clean) await persistenceOf(aedes)?.removeSubscriptions?.(client, [topic]);
}
