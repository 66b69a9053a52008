import type { Client, ConnectPacket } from 'aedes';
import { topicMatchesFilter } from './topic';

/**
 * Live MQTT connections with what the EMQX clients API and rule-engine events report about
 * them. aedes keeps the protocol state; this keeps the facts aedes does not expose (connect
 * packet fields, peer addresses, timestamps, counters, the reason a connection ended).
 *
 * Only connected clients are listed: sessions of disconnected `clean_session=false` clients
 * are kept by aedes for message queuing but are not shown (see index.ts).
 */

export type DisconnectReason = 'normal' | 'kicked' | 'keepalive_timeout' | 'takenover' | 'discarded' | 'tcp_closed';

export interface SubscriptionOptions {
  qos: number;
  nl: number;
  rap: number;
  rh: number;
}

export interface LiveSession {
  client: Client;
  clientid: string;
  username: string | undefined;
  isSuperuser: boolean;
  protoName: string;
  protoVer: number;
  keepalive: number;
  cleanStart: boolean;
  /** Seconds; MQTT 3.1.1 persistent sessions get EMQX's default `session_expiry_interval` (2 h). */
  expiryInterval: number;
  listener: 'tcp:default' | 'ws:default';
  ipAddress: string;
  port: number;
  sockName: string;
  connectedAt: number;
  createdAt: number;
  subscriptions: Map<string, SubscriptionOptions>;
  recvMsg: number;
  sendMsg: number;
  disconnectReason?: DisconnectReason;
}

interface ConnectFacts {
  protoName: string;
  protoVer: number;
  keepalive: number;
  cleanStart: boolean;
  username: string | undefined;
  isSuperuser: boolean;
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

export class SessionRegistry {
  private readonly connecting = new WeakMap<Client, ConnectFacts>();
  private readonly live = new Map<string, LiveSession>();

  /** From the CONNECT packet, before authentication. */
  noteConnectPacket(client: Client, packet: ConnectPacket): void {
    this.connecting.set(client, {
      protoName: packet.protocolId ?? 'MQTT',
      protoVer: packet.protocolVersion ?? 4,
      keepalive: packet.keepalive ?? 0,
      cleanStart: packet.clean ?? true,
      username: packet.username,
      isSuperuser: false,
    });
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
    const cleanStart = facts?.cleanStart ?? true;
    const session: LiveSession = {
      client,
      clientid: client.id,
      username: facts?.username,
      isSuperuser: facts?.isSuperuser ?? false,
      protoName: facts?.protoName ?? 'MQTT',
      protoVer: facts?.protoVer ?? 4,
      keepalive: facts?.keepalive ?? 0,
      cleanStart,
      expiryInterval: cleanStart ? 0 : PERSISTENT_SESSION_EXPIRY_SEC,
      listener: details.isWebsocket ? 'ws:default' : 'tcp:default',
      ipAddress: stripIpv4Mapping(details.ipAddress ?? 'undefined'),
      port: details.port ?? 0,
      sockName: `${stripIpv4Mapping(details.serverIpAddress ?? 'undefined')}:${details.serverPort ?? 0}`,
      connectedAt: now,
      createdAt: now,
      subscriptions: new Map(),
      recvMsg: 0,
      sendMsg: 0,
    };
    this.live.set(client.id, session);
    return session;
  }

  /** Removes the session if it still belongs to this connection (a takeover replaces it). */
  unregister(client: Client): LiveSession | undefined {
    const session = this.live.get(client.id);
    if (!session || session.client !== client) return undefined;
    this.live.delete(client.id);
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

  /** Whether any live subscription would receive a message on `topic`. */
  hasSubscriberFor(topic: string): boolean {
    for (const session of this.live.values()) {
      for (const filter of session.subscriptions.keys()) {
        if (topicMatchesFilter(topic, filter)) return true;
      }
    }
    return false;
  }

  subscriptionCount(): number {
    let total = 0;
    for (const session of this.live.values()) total += session.subscriptions.size;
    return total;
  }

  /** The routing table: each distinct topic filter once. */
  routedFilters(): string[] {
    const filters = new Set<string>();
    for (const session of this.live.values()) for (const filter of session.subscriptions.keys()) filters.add(filter);
    return [...filters];
  }
}

function stripIpv4Mapping(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
