import { printableProperties, type MqttProperties } from '../mqtt5';
import type { DisconnectReason, LiveSession, SessionFacts } from '../sessions';

/**
 * Rule-engine event bodies as EMQX 5 emits them for `SELECT *`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl), minus the
 * common fields (`event`, `timestamp`, `node`, `metadata`) that the rule engine adds when a rule
 * fires. Absent usernames and mountpoints are the string "undefined", as in EMQX.
 */

export type EventBody = Record<string, unknown>;

function peername(session: SessionFacts): string {
  return `${session.ipAddress}:${session.port}`;
}

function usernameField(username: string | undefined): string {
  return username ?? 'undefined';
}

export function clientConnectedEvent(session: LiveSession): EventBody {
  return {
    clientid: session.clientid,
    username: usernameField(session.username),
    mountpoint: 'undefined',
    peername: peername(session),
    sockname: session.sockName,
    proto_name: session.protoName,
    proto_ver: session.protoVer,
    keepalive: session.keepalive,
    clean_start: session.cleanStart,
    receive_maximum: session.receiveMaximum,
    expiry_interval: session.expiryInterval,
    is_bridge: false,
    conn_props: printableProperties(session.connProps),
    connected_at: session.connectedAt,
    client_attrs: {},
  };
}

export function clientDisconnectedEvent(session: LiveSession, reason: DisconnectReason, disconnectedAt: number): EventBody {
  return {
    reason,
    clientid: session.clientid,
    username: usernameField(session.username),
    peername: peername(session),
    sockname: session.sockName,
    proto_name: session.protoName,
    proto_ver: session.protoVer,
    disconn_props: printableProperties(session.disconnProps),
    disconnected_at: disconnectedAt,
    connected_at: session.connectedAt,
    client_attrs: {},
  };
}

/**
 * `session.subscribed` and `session.unsubscribed` (`eventmsg_sub_or_unsub/4`): the same body,
 * with the SUBSCRIBE's or UNSUBSCRIBE's properties under `sub_props` or `unsub_props`.
 */
export function subscriptionEvent(
  kind: 'subscribed' | 'unsubscribed',
  session: SessionFacts,
  subscription: { topic: string; qos: number; properties?: MqttProperties | undefined },
): EventBody {
  return {
    clientid: session.clientid,
    username: usernameField(session.username),
    peerhost: session.ipAddress,
    peername: peername(session),
    topic: subscription.topic,
    qos: subscription.qos,
    [kind === 'subscribed' ? 'sub_props' : 'unsub_props']: printableProperties(subscription.properties),
    client_attrs: {},
  };
}

export interface PublishedMessage {
  id: string;
  /** The publishing client, or undefined for messages published through the REST API. */
  session: LiveSession | undefined;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  /** The PUBLISH's MQTT 5 properties, or those of a REST publish. */
  properties: MqttProperties | undefined;
  receivedAt: number;
}

/**
 * REST-published messages come from the internal sender `http_api`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl).
 */
export function messagePublishEvent(message: PublishedMessage): EventBody {
  const session = message.session;
  return {
    id: message.id,
    clientid: session?.clientid ?? 'http_api',
    username: usernameField(session?.username),
    payload: message.payload.toString('utf8'),
    peerhost: session?.ipAddress ?? 'undefined',
    peername: session ? peername(session) : 'undefined',
    topic: message.topic,
    qos: message.qos,
    flags: { retain: message.retain, dup: message.dup },
    pub_props: printableProperties(message.properties),
    publish_received_at: message.receivedAt,
    client_attrs: {},
  };
}
