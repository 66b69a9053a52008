import type { Client, ConnectPacket } from 'aedes';
import { disconnectReasonName, MQTT_V5, type MqttProperties } from './mqtt5';
import { RouteIndex, SubscriptionTable } from './route-index';

/**
 * MQTT sessions with what the EMQX clients API and rule-engine events report about them. aedes
 * keeps the protocol state of connections; this keeps the facts aedes does not expose (connect
 * packet fields, peer addresses, timestamps, counters, the reason a connection ended) and the
 * sessions of disconnected persistent clients (`clean_session=false`), with their subscriptions
 * and message queue, as EMQX's in-memory sessions do
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_session_mem.erl).
 */

/**
 * Why a connection ended, as EMQX names it: `normal`, `kicked`, `keepalive_timeout`, `takenover`,
 * `discarded`, `tcp_closed`, or the name of the reason code of an MQTT 5 DISCONNECT (mqtt5.ts).
 */
export type DisconnectReason = string;

export interface SubscriptionOptions {
  qos: number;
  nl: number;
  rap: number;
  rh: number;
}

/** What a session knows about its client, connected or not. */
export interface SessionFacts {
  clientid: string;
  username: string | undefined;
  isSuperuser: boolean;
  protoName: string;
  protoVer: number;
  keepalive: number;
  cleanStart: boolean;
  /**
   * Seconds: MQTT 5's Session Expiry Interval from CONNECT (0 when absent), changed by the
   * DISCONNECT's; MQTT 3.1.1 persistent sessions get EMQX's default `session_expiry_interval` (2 h).
   */
  expiryInterval: number;
  /** `receive_maximum`: the client's Receive-Maximum capped by EMQX's `max_inflight` (32). */
  receiveMaximum: number;
  /** The CONNECT's MQTT 5 properties ({} for MQTT 3.1.1). */
  connProps: MqttProperties;
  /** The properties of the client's MQTT 5 DISCONNECT, once it sent one. */
  disconnProps?: MqttProperties;
  listener: 'tcp:default' | 'ws:default';
  ipAddress: string;
  port: number;
  sockName: string;
  connectedAt: number;
  createdAt: number;
  /** Filter to options; changes reach the routing table while the session is registered. */
  subscriptions: SubscriptionTable<SubscriptionOptions>;
  recvMsg: number;
  sendMsg: number;
  disconnectReason?: DisconnectReason;
}

export interface LiveSession extends SessionFacts {
  client: Client;
}

/** A message waiting in an offline session's queue (emqx_mqueue), with the QoS it will be delivered at. */
export interface QueuedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** MQTT 5 properties, delivered to MQTT 5 clients. */
  properties?: MqttProperties;
  /** Epoch ms after which it is dropped instead of delivered (MQTT 5 Message-Expiry-Interval). */
  expiresAt?: number;
}

/** A persistent session whose client is disconnected: kept until it expires, is resumed or is discarded. */
export interface OfflineSession extends SessionFacts {
  disconnectedAt: number;
  mqueue: QueuedMessage[];
  /** Messages dropped because the queue was full (the oldest go first). */
  mqueueDropped: number;
  /** Absent for a session that never expires (MQTT 5 interval 0xFFFFFFFF). */
  expiryTimer: NodeJS.Timeout | undefined;
}

/** The zone's `mqtt` settings that shape offline queues (EMQX defaults). */
export interface QueueSettings {
  /** `max_mqueue_len`; 0 = no limit. */
  maxMqueueLen: number;
  /** `mqueue_store_qos0`. */
  storeQos0: boolean;
}

export const DEFAULT_QUEUE_SETTINGS: QueueSettings = { maxMqueueLen: 1000, storeQos0: true };

/** What queuing a message did: copies queued, oldest ones dropped from full queues, QoS 0 copies not stored. */
export interface QueueCounts {
  queued: number;
  droppedQueueFull: number;
  droppedQos0: number;
}

interface ConnectFacts {
  protoName: string;
  protoVer: number;
  keepalive: number;
  cleanStart: boolean;
  username: string | undefined;
  isSuperuser: boolean;
  connProps: MqttProperties;
}

/** What aedes-server-factory attaches to each client (not in aedes' types). */
interface ConnectionDetails {
  ipAddress?: string;
  port?: number;
  serverIpAddress?: string;
  serverPort?: number;
  isWebsocket?: boolean;
}

const PERSISTENT_SESSION_EXPIRY_SEC = 7_200;
/** MQTT 5: a Session Expiry Interval of 0xFFFFFFFF never expires. */
const NEVER_EXPIRES_SEC = 0xffff_ffff;
/** EMQX's default `mqtt.max_inflight`, the cap on a client's Receive-Maximum. */
const MAX_INFLIGHT = 32;

/**
 * The session expiry EMQX derives from a CONNECT: MQTT 5's property (0 when absent, whatever the
 * Clean Start flag), else 0 for a clean session and `session_expiry_interval` for a persistent one
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `expiry_interval/2`).
 */
function expiryIntervalOf(facts: ConnectFacts): number {
  if (facts.protoVer === MQTT_V5) return numberProperty(facts.connProps, 'sessionExpiryInterval') ?? 0;
  return facts.cleanStart ? 0 : PERSISTENT_SESSION_EXPIRY_SEC;
}

function numberProperty(properties: MqttProperties | undefined, name: string): number | undefined {
  const value = properties?.[name];
  return typeof value === 'number' ? value : undefined;
}

export class SessionRegistry {
  private readonly connecting = new WeakMap<Client, ConnectFacts>();
  private readonly live = new Map<string, LiveSession>();
  private readonly offline = new Map<string, OfflineSession>();
  /** The subscriptions of every registered session, live and offline (EMQX keeps an offline session's routes). */
  private readonly routes = new RouteIndex<SessionFacts>();

  constructor(
    readonly queueSettings: QueueSettings = DEFAULT_QUEUE_SETTINGS,
    /** Called when an offline session expires (its persisted subscriptions are dropped). */
    private readonly onExpired: (session: OfflineSession) => void = () => undefined,
  ) {}

  /** From the CONNECT packet, before authentication. */
  noteConnectPacket(client: Client, packet: ConnectPacket): void {
    this.connecting.set(client, {
      protoName: packet.protocolId ?? 'MQTT',
      protoVer: packet.protocolVersion ?? 4,
      keepalive: packet.keepalive ?? 0,
      cleanStart: packet.clean ?? true,
      username: packet.username,
      isSuperuser: false,
      connProps: (packet.properties as MqttProperties | undefined) ?? {},
    });
  }

  /** The CONNECT's Clean Start flag (aedes' `client.clean` says whether an MQTT 5 session outlives its connection). */
  cleanStartOf(client: Client): boolean {
    return this.connecting.get(client)?.cleanStart ?? true;
  }

  /**
   * A client's DISCONNECT: its reason code names why the connection ended (MQTT 3.1.1 has none:
   * `normal`), and an MQTT 5 Session Expiry Interval in it replaces the CONNECT's, except that a session that was to end with its connection
   * cannot be kept that way (protocol error) (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl
   * `process_disconnect/2`, `post_process_disconnect/3`).
   */
  noteDisconnectPacket(client: Client, packet: { reasonCode?: number; properties?: MqttProperties }): void {
    const session = this.of(client);
    if (!session) return;
    session.disconnProps = packet.properties ?? {};
    const expiry = numberProperty(packet.properties, 'sessionExpiryInterval');
    const protocolError = expiry !== undefined && expiry > 0 && session.expiryInterval === 0;
    if (expiry !== undefined && !protocolError) session.expiryInterval = expiry;
    this.markDisconnectReason(client.id, protocolError ? 'protocol_error' : disconnectReasonName(packet.reasonCode ?? 0));
  }

  noteAuthenticated(client: Client, isSuperuser: boolean): void {
    const facts = this.connecting.get(client);
    if (facts) facts.isSuperuser = isSuperuser;
  }

  /** The facts of a connection being authenticated or authorized (it may not be registered yet). */
  subjectOf(client: Client): { clientid: string; username: string | undefined; isSuperuser: boolean } {
    const facts = this.connecting.get(client);
    return { clientid: client.id, username: facts?.username, isSuperuser: facts?.isSuperuser ?? false };
  }

  register(client: Client, now = Date.now()): LiveSession {
    const facts = this.connecting.get(client);
    const details = (client as unknown as { connDetails?: ConnectionDetails }).connDetails ?? {};
    const connect: ConnectFacts = facts ?? { protoName: 'MQTT', protoVer: 4, keepalive: 0, cleanStart: true, username: undefined, isSuperuser: false, connProps: {} };
    const session: LiveSession = {
      client,
      clientid: client.id,
      username: connect.username,
      isSuperuser: connect.isSuperuser,
      protoName: connect.protoName,
      protoVer: connect.protoVer,
      keepalive: connect.keepalive,
      cleanStart: connect.cleanStart,
      expiryInterval: expiryIntervalOf(connect),
      receiveMaximum: Math.min(numberProperty(connect.connProps, 'receiveMaximum') ?? MAX_INFLIGHT, MAX_INFLIGHT),
      connProps: connect.connProps,
      listener: details.isWebsocket ? 'ws:default' : 'tcp:default',
      ipAddress: stripIpv4Mapping(details.ipAddress ?? 'undefined'),
      port: details.port ?? 0,
      sockName: `${stripIpv4Mapping(details.serverIpAddress ?? 'undefined')}:${details.serverPort ?? 0}`,
      connectedAt: now,
      createdAt: now,
      subscriptions: new SubscriptionTable<SubscriptionOptions>(),
      recvMsg: 0,
      sendMsg: 0,
    };
    // A takeover: the new connection's session replaces the old one, routes included.
    const replaced = this.live.get(client.id);
    if (replaced) this.unroute(replaced);
    this.live.set(client.id, session);
    this.route(session);
    return session;
  }

  /** Removes the session if it still belongs to this connection (a takeover replaces it). */
  unregister(client: Client): LiveSession | undefined {
    const session = this.live.get(client.id);
    if (!session || session.client !== client) return undefined;
    this.live.delete(client.id);
    this.unroute(session);
    return session;
  }

  get(clientid: string): LiveSession | undefined {
    return this.live.get(clientid);
  }

  /** The registered session of exactly this connection. */
  of(client: Client): LiveSession | undefined {
    const session = this.live.get(client.id);
    return session && session.client === client ? session : undefined;
  }

  list(): LiveSession[] {
    return [...this.live.values()];
  }

  count(): number {
    return this.live.size;
  }

  markDisconnectReason(clientid: string, reason: DisconnectReason): void {
    const session = this.live.get(clientid);
    if (session && session.disconnectReason === undefined) session.disconnectReason = reason;
  }

  /**
   * Whether any subscription would receive a message on `topic`. An offline session's
   * subscriptions count: EMQX keeps their routes, and queues what they match.
   */
  hasSubscriberFor(topic: string): boolean {
    return this.routes.hasMatch(topic);
  }

  subscriptionCount(): number {
    return this.routes.subscriptionCount();
  }

  /** The routing table: each distinct topic filter once. */
  routedFilters(): string[] {
    return this.routes.filters();
  }

  routedFilterCount(): number {
    return this.routes.filterCount();
  }

  /** Puts a session that joined the registry in the routing table, and keeps it there as it subscribes and unsubscribes. */
  private route(session: SessionFacts): void {
    for (const filter of session.subscriptions.keys()) this.routes.add(filter, session);
    session.subscriptions.follow((filter, subscribed) => (subscribed ? this.routes.add(filter, session) : this.routes.remove(filter, session)));
  }

  private unroute(session: SessionFacts): void {
    session.subscriptions.follow(undefined);
    for (const filter of session.subscriptions.keys()) this.routes.remove(filter, session);
  }

  // ---- offline persistent sessions ----

  /**
   * Keeps the session of a client that just disconnected, if it outlives its connection: MQTT
   * 3.1.1 `clean_session=false` or an MQTT 5 Session Expiry Interval above 0, and the connection
   * ended without the session being kicked, taken over or discarded.
   */
  park(session: LiveSession, now = Date.now()): OfflineSession | undefined {
    const reason = session.disconnectReason;
    if (session.expiryInterval <= 0 || reason === 'kicked' || reason === 'takenover' || reason === 'discarded') return undefined;
    const { client: _client, ...facts } = session;
    const expiryTimer =
      session.expiryInterval >= NEVER_EXPIRES_SEC
        ? undefined
        : setTimeout(() => this.expire(session.clientid), Math.min(session.expiryInterval * 1000, 2 ** 31 - 1));
    expiryTimer?.unref();
    const parked: OfflineSession = { ...facts, disconnectedAt: now, mqueue: [], mqueueDropped: 0, expiryTimer };
    this.offline.set(session.clientid, parked);
    this.route(parked);
    return parked;
  }

  getOffline(clientid: string): OfflineSession | undefined {
    return this.offline.get(clientid);
  }

  listOffline(): OfflineSession[] {
    return [...this.offline.values()];
  }

  /** Connected clients and offline sessions together (EMQX's `sessions.count`). */
  sessionCount(): number {
    return this.live.size + this.offline.size;
  }

  /** Removes an offline session (resumed by a new connection, or discarded); undefined if there was none. */
  takeOffline(clientid: string): OfflineSession | undefined {
    const session = this.offline.get(clientid);
    if (!session) return undefined;
    clearTimeout(session.expiryTimer);
    this.offline.delete(clientid);
    this.unroute(session);
    return session;
  }

  /**
   * Queues a published message in every offline session with a matching subscription, once per
   * matching filter as EMQX routes it, at the lower of the message's and the subscription's QoS
   * (`upgrade_qos = false`). QoS 0 is queued only while `mqueue_store_qos0`; a full queue drops
   * its oldest message (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_mqueue.erl `in/2`).
   */
  enqueueOffline(message: QueuedMessage): QueueCounts {
    const counts = { queued: 0, droppedQueueFull: 0, droppedQos0: 0 };
    for (const filter of this.routes.matchingFilters(message.topic)) {
      for (const subscriber of this.routes.subscribersOf(filter)) {
        const session = this.offline.get(subscriber.clientid);
        const options = session === subscriber ? session.subscriptions.get(filter) : undefined;
        if (!session || !options) continue;
        // Retain As Published 0: the retain flag is cleared on delivery (emqx_session enrich_subopts/4).
        this.queueIn(session, { ...message, retain: options.rap === 1 ? message.retain : false }, options.qos, counts);
      }
    }
    return counts;
  }

  /**
   * Queues a retained message for a new subscription of an offline session, as EMQX's retainer
   * sends it to a subscriber (retain flag set) and a disconnected channel queues it.
   */
  enqueueRetained(session: OfflineSession, message: QueuedMessage, subscriptionQos: number): QueueCounts {
    const counts = { queued: 0, droppedQueueFull: 0, droppedQos0: 0 };
    this.queueIn(session, { ...message, retain: true }, subscriptionQos, counts);
    return counts;
  }

  private queueIn(session: OfflineSession, message: QueuedMessage, subscriptionQos: number, counts: QueueCounts): void {
    const { maxMqueueLen, storeQos0 } = this.queueSettings;
    const qos = Math.min(message.qos, subscriptionQos) as 0 | 1 | 2;
    if (qos === 0 && !storeQos0) {
      counts.droppedQos0 += 1;
      return;
    }
    session.mqueue.push({ ...message, qos });
    if (maxMqueueLen > 0 && session.mqueue.length > maxMqueueLen) {
      session.mqueue.shift();
      session.mqueueDropped += 1;
      counts.droppedQueueFull += 1;
    }
    counts.queued += 1;
  }

  private expire(clientid: string): void {
    const session = this.takeOffline(clientid);
    if (session) this.onExpired(session);
  }

  /** Stops the expiry timers (the broker is closing). */
  clearOffline(): void {
    for (const session of this.offline.values()) {
      clearTimeout(session.expiryTimer);
      this.unroute(session);
    }
    this.offline.clear();
  }
}

function stripIpv4Mapping(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
