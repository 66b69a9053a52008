import type { Aedes, AedesPublishPacket, Client, Subscription } from 'aedes';
import { newMessageId } from './emqx-formats';
import type { BrokerMetrics } from './metrics';
import { REASON_CODE, type MqttProperties } from './mqtt5';
import { countDropped, deliverQueued } from './offline-sessions';
import type { MessagePublisher } from './publish';
import { clientConnectedEvent, clientDisconnectedEvent, messagePublishEvent, subscriptionEvent } from './rule-engine/events';
import type { RuleEngine } from './rule-engine/rule-engine';
import type { DisconnectReason, OfflineSession, SessionRegistry } from './sessions';
import type { BrokerStats } from './stats';
import { isSystemTopic } from './topic';

/**
 * Follows aedes' connection and traffic events to keep the session registry, the counters and
 * the rule engine up to date.
 */

export interface BrokerEventDeps {
  sessions: SessionRegistry;
  metrics: BrokerMetrics;
  stats: BrokerStats;
  ruleEngine: RuleEngine;
  publisher: MessagePublisher;
}

/** aedes' per-client internals this module reads (not in aedes' types). */
interface ClientInternals {
  /** Set when the client sent DISCONNECT. */
  _disconnected?: boolean;
  subscriptions?: Record<string, { qos: number; nl?: boolean; rap?: boolean; rh?: number }>;
  /** The client's packet parser (mqtt-packet), which emits every packet the client sends. */
  _parser: { on(event: 'packet', listener: (packet: ClientPacket) => void): void };
}

/** The fields of the client packets read here, as mqtt-packet decodes them. */
interface ClientPacket {
  cmd: string;
  reasonCode?: number;
  properties?: MqttProperties;
  subscriptions?: Subscription[];
  unsubscriptions?: string[];
}

export function followBrokerEvents(aedes: Aedes, deps: BrokerEventDeps): void {
  const { sessions, metrics, stats, ruleEngine, publisher } = deps;
  /** Offline sessions resumed by a connection, until its CONNACK is out and their queue can be sent. */
  const resuming = new WeakMap<Client, OfflineSession>();
  /** MQTT 5 SUBSCRIBE properties per subscription, and UNSUBSCRIBE properties per client and filter, until aedes' events report them. */
  const subscribeProperties = new WeakMap<Subscription, MqttProperties>();
  const unsubscribeProperties = new WeakMap<Client, Map<string, MqttProperties>>();

  /**
   * What aedes' events leave out of a client's packets: the reason code and properties of its
   * DISCONNECT (MQTT 5), and the properties of its SUBSCRIBE and UNSUBSCRIBE. The parser emits a
   * packet before aedes has acted on it, so these are noted before aedes' events fire.
   */
  function followClientPackets(client: Client): void {
    internals(client)._parser.on('packet', (packet) => {
      if (packet.cmd === 'disconnect') sessions.noteDisconnectPacket(client, packet);
      if (!packet.properties) return;
      const properties = packet.properties;
      if (packet.cmd === 'subscribe') for (const sub of packet.subscriptions ?? []) subscribeProperties.set(sub, properties);
      if (packet.cmd === 'unsubscribe') {
        const byFilter = unsubscribeProperties.get(client) ?? new Map<string, MqttProperties>();
        for (const topic of packet.unsubscriptions ?? []) byFilter.set(topic, properties);
        unsubscribeProperties.set(client, byFilter);
      }
    });
  }

  aedes.on('client', (client) => {
    const offline = sessions.takeOffline(client.id);
    const session = sessions.register(client);
    followClientPackets(client);
    // A clean start discards an offline session (aedes has already dropped its stored subscriptions).
    if (offline && session.cleanStart) metrics.inc('session.discarded');
    if (offline && !session.cleanStart) {
      session.createdAt = offline.createdAt;
      resuming.set(client, offline);
    }
    // A resumed session's subscriptions are restored by aedes without a `subscribe` event.
    for (const [topic, sub] of Object.entries(internals(client).subscriptions ?? {})) {
      session.subscriptions.set(topic, { qos: sub.qos, nl: sub.nl ? 1 : 0, rap: sub.rap ? 1 : 0, rh: sub.rh ?? 0 });
    }
    stats.observe();
  });

  aedes.on('clientReady', (client) => {
    const session = sessions.of(client);
    if (!session) return;
    const resumed = resuming.get(client);
    resuming.delete(client);
    metrics.inc('client.connected');
    metrics.inc('client.connack');
    metrics.inc(resumed ? 'session.resumed' : 'session.created');
    ruleEngine.fireEvent('$events/client_connected', clientConnectedEvent(session));
    if (resumed) deliverQueued(client, resumed, metrics);
  });

  aedes.on('keepaliveTimeout', (client) => markReason(client, 'keepalive_timeout'));

  aedes.on('clientDisconnect', (client) => {
    const session = sessions.unregister(client);
    if (!session) return;
    const reason = session.disconnectReason ?? (internals(client)._disconnected ? 'normal' : 'tcp_closed');
    session.disconnectReason = reason;
    metrics.inc('client.disconnected');
    if (!sessions.park(session)) metrics.inc('session.terminated');
    ruleEngine.fireEvent('$events/client_disconnected', clientDisconnectedEvent(session, reason, Date.now()));
    stats.observe();
  });

  aedes.on('subscribe', (subscriptions: Subscription[], client: Client) => {
    const session = sessions.of(client);
    if (!session) return;
    for (const sub of subscriptions) {
      metrics.inc('client.subscribe');
      // A refused filter: its SUBACK code (0x80, or MQTT 5's 0x87, 0x9E) is in place of the QoS.
      if (sub.qos >= REASON_CODE.FAILURE) continue;
      session.subscriptions.set(sub.topic, { qos: sub.qos, nl: sub.nl ? 1 : 0, rap: sub.rap ? 1 : 0, rh: sub.rh ?? 0 });
      const properties = subscribeProperties.get(sub);
      ruleEngine.fireEvent('$events/session_subscribed', subscriptionEvent('subscribed', session, { topic: sub.topic, qos: sub.qos, properties }));
    }
    stats.observe();
  });

  aedes.on('unsubscribe', (topics: string[], client: Client) => {
    // aedes also "unsubscribes" everything when a clean session closes; EMQX fires no events then.
    if (client.closed) return;
    const session = sessions.of(client);
    if (!session) return;
    const byFilter = unsubscribeProperties.get(client);
    for (const topic of topics) {
      metrics.inc('client.unsubscribe');
      const properties = byFilter?.get(topic);
      byFilter?.delete(topic);
      const previous = session.subscriptions.get(topic);
      if (!previous) continue;
      session.subscriptions.delete(topic);
      ruleEngine.fireEvent('$events/session_unsubscribed', subscriptionEvent('unsubscribed', session, { topic, qos: previous.qos, properties }));
    }
  });

  aedes.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    if (isSystemTopic(packet.topic)) return;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    metrics.inc('messages.publish');
    if (packet.retain) stats.noteRetained(packet.topic, payload.length);
    if (!(publisher.matchedOf(packet) ?? sessions.hasSubscriberFor(packet.topic))) {
      metrics.inc('messages.dropped');
      metrics.inc('messages.dropped.no_subscribers');
    }
    const receivedAt = Date.now();
    const properties = packet.properties as MqttProperties | undefined;
    const expiry = properties?.messageExpiryInterval;
    const offline = sessions.enqueueOffline({
      topic: packet.topic,
      payload,
      qos: packet.qos,
      retain: packet.retain,
      ...(properties ? { properties } : {}),
      ...(typeof expiry === 'number' && expiry > 0 ? { expiresAt: receivedAt + expiry * 1000 } : {}),
    });
    countDropped(metrics, offline);
    ruleEngine.fireMessagePublish(
      packet.topic,
      messagePublishEvent({
        id: publisher.messageIdOf(packet) ?? newMessageId(),
        session: client ? sessions.of(client) : undefined,
        topic: packet.topic,
        payload,
        qos: packet.qos,
        retain: packet.retain,
        dup: packet.dup,
        properties,
        receivedAt,
      }),
    );
  });

  function markReason(client: Client, reason: DisconnectReason): void {
    if (sessions.of(client)) sessions.markDisconnectReason(client.id, reason);
  }
}

function internals(client: Client): ClientInternals {
  return client as unknown as ClientInternals;
}
