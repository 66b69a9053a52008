import type { Client, PublishPacket } from 'aedes';
import { writeToStream, type UserProperties } from 'mqtt-packet';

/**
 * MQTT 5 on the dev broker: EMQX's names for properties and reason codes, and the publish
 * acknowledgement with reason code 16 that aedes has no hook for.
 */

/** MQTT 5 properties as mqtt-packet decodes and encodes them (camelCase names). */
export type MqttProperties = Record<string, unknown>;

export const MQTT_V5 = 5;

/** Reason codes the broker sends or names itself (MQTT 5.0 section 2.4). */
export const REASON_CODE = {
  NO_MATCHING_SUBSCRIBERS: 0x10,
  FAILURE: 0x80,
  ADMINISTRATIVE_ACTION: 0x98,
} as const;

/**
 * EMQX's names of MQTT 5 reason codes; a client DISCONNECT's code becomes the `reason` of its
 * `client.disconnected` event under this name, 0 as `normal`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_reason_codes.erl `name/1`,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `disconnect_reason/1`).
 */
const REASON_NAMES: Readonly<Record<number, string>> = {
  0x04: 'disconnect_with_will_message',
  0x80: 'unspecified_error',
  0x81: 'malformed_packet',
  0x82: 'protocol_error',
  0x83: 'implementation_specific_error',
  0x87: 'not_authorized',
  0x89: 'server_busy',
  0x8b: 'server_shutting_down',
  0x8d: 'keepalive_timeout',
  0x8e: 'session_taken_over',
  0x90: 'topic_name_invalid',
  0x93: 'receive_maximum_exceeded',
  0x94: 'topic_alias_invalid',
  0x95: 'packet_too_large',
  0x96: 'message_rate_too_high',
  0x97: 'quota_exceeded',
  0x98: 'administrative_action',
  0x99: 'payload_format_invalid',
  0x9c: 'use_another_server',
  0x9d: 'server_moved',
  0x9f: 'connection_rate_exceeded',
  0xa0: 'maximum_connect_time',
};

export function disconnectReasonName(reasonCode: number): string {
  return reasonCode === 0 ? 'normal' : (REASON_NAMES[reasonCode] ?? 'unknown_error');
}

/** mqtt-packet's property names and EMQX's (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_mqtt_props.erl). */
const EMQX_PROPERTY_NAMES: Readonly<Record<string, string>> = {
  payloadFormatIndicator: 'Payload-Format-Indicator',
  messageExpiryInterval: 'Message-Expiry-Interval',
  contentType: 'Content-Type',
  responseTopic: 'Response-Topic',
  correlationData: 'Correlation-Data',
  subscriptionIdentifier: 'Subscription-Identifier',
  sessionExpiryInterval: 'Session-Expiry-Interval',
  assignedClientIdentifier: 'Assigned-Client-Identifier',
  serverKeepAlive: 'Server-Keep-Alive',
  authenticationMethod: 'Authentication-Method',
  authenticationData: 'Authentication-Data',
  requestProblemInformation: 'Request-Problem-Information',
  willDelayInterval: 'Will-Delay-Interval',
  requestResponseInformation: 'Request-Response-Information',
  responseInformation: 'Response-Information',
  serverReference: 'Server-Reference',
  reasonString: 'Reason-String',
  receiveMaximum: 'Receive-Maximum',
  topicAliasMaximum: 'Topic-Alias-Maximum',
  topicAlias: 'Topic-Alias',
  maximumQoS: 'Maximum-QoS',
  retainAvailable: 'Retain-Available',
  maximumPacketSize: 'Maximum-Packet-Size',
  wildcardSubscriptionAvailable: 'Wildcard-Subscription-Available',
  subscriptionIdentifiersAvailable: 'Subscription-Identifier-Available',
  sharedSubscriptionAvailable: 'Shared-Subscription-Available',
};

/**
 * Properties as EMQX prints them in rule-engine events (`conn_props`, `disconn_props`,
 * `pub_props`, `sub_props`, `unsub_props`): EMQX's names, flags as 0/1, binaries as text, and
 * User-Property twice, as a map (the last value of a repeated key wins) and as
 * `User-Property-Pairs` in order; an MQTT 3.1.1 packet (no properties) gives
 * `{"User-Property": {}}`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl `printable_maps/1`).
 */
export function printableProperties(properties: MqttProperties | undefined): Record<string, unknown> {
  const printable: Record<string, unknown> = { 'User-Property': {} };
  for (const [name, value] of Object.entries(properties ?? {})) {
    if (value === undefined) continue;
    if (name === 'userProperties') {
      const pairs = userPropertyPairs(value as UserProperties);
      printable['User-Property'] = Object.fromEntries(pairs.map((p) => [p.key, p.value]));
      printable['User-Property-Pairs'] = pairs;
      continue;
    }
    const emqxName = EMQX_PROPERTY_NAMES[name];
    if (emqxName === undefined) continue;
    printable[emqxName] = typeof value === 'boolean' ? Number(value) : Buffer.isBuffer(value) ? value.toString('utf8') : value;
  }
  return printable;
}

function userPropertyPairs(properties: UserProperties): { key: string; value: string }[] {
  return Object.entries(properties).flatMap(([key, values]) => (Array.isArray(values) ? values : [values]).map((value) => ({ key, value })));
}

/**
 * Acknowledges an MQTT 5 QoS 1/2 PUBLISH that no subscription matches with reason code 16, as
 * EMQX does (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl
 * `puback_reason_code/3`, `pubrec_reason_code/1`), and routes it (retained messages, events).
 * aedes acknowledges with 0 and offers no hook for the code; so the packet is marked the way
 * aedes marks a publish its authorizePublish hook already answered (`_notAuthorized`, which
 * makes lib/handlers/publish.js `enqueuePublish` skip it), and answered here. A QoS 2 packet is
 * stored as aedes stores it, so a duplicate before PUBREL is not routed twice and PUBREL finds it.
 */
export function answerNoMatchingSubscribers(aedes: AedesWithPersistence, client: Client, packet: PublishPacket, route: (packet: PublishPacket) => Promise<void>): void {
  (packet as PublishPacket & { _notAuthorized?: boolean })._notAuthorized = true;
  const ack = (cmd: 'puback' | 'pubrec'): void => {
    const connection = (client as unknown as { conn: NodeJS.WritableStream }).conn;
    writeToStream({ cmd, messageId: packet.messageId ?? 0, reasonCode: REASON_CODE.NO_MATCHING_SUBSCRIBERS }, connection, { protocolVersion: MQTT_V5 });
  };
  const answer = async (): Promise<void> => {
    if (packet.qos === 1) {
      ack('puback');
      await route(packet);
      return;
    }
    const persistence = aedes.persistence;
    const duplicate = await persistence.incomingGetPacket(client, packet).then(
      () => true,
      () => false,
    );
    if (!duplicate) {
      await persistence.incomingStorePacket(client, packet);
      await route(packet);
    }
    ack('pubrec');
  };
  answer().catch((err: unknown) => client.emit('error', err instanceof Error ? err : new Error(String(err))));
}

/** aedes' persistence calls for inbound QoS 2 packets (not in aedes' types). */
export interface AedesWithPersistence {
  persistence: {
    incomingGetPacket(client: Client, packet: PublishPacket): Promise<unknown>;
    incomingStorePacket(client: Client, packet: PublishPacket): Promise<unknown>;
  };
}
