import type { Aedes, PublishPacket } from 'aedes';
import { z } from 'zod';
import { describeZodError } from './api/errors';
import { newMessageId } from './emqx-formats';
import type { MqttProperties } from './mqtt5';
import type { SessionRegistry } from './sessions';
import { isValidTopicName } from './topic';

/**
 * `POST /publish` and `/publish/bulk` (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl).
 * Messages come from the internal sender `http_api` and skip authorization. 200 with the message
 * id when a subscriber matched, an offline persistent session's subscription included (the
 * message is queued in that session), 202 `no_matching_subscribers` otherwise (a retained message
 * is still stored).
 */

export const PublishRequest = z.looseObject({
  topic: z.string(),
  payload: z.string(),
  payload_encoding: z.enum(['plain', 'base64']).default('plain'),
  qos: z.number().int().min(0).max(2).default(0),
  retain: z.boolean().default(false),
  /**
   * MQTT 5 properties (`fields(message_properties)`), delivered to MQTT 5 subscribers. MQTT 3.1.1
   * clients cannot receive them; `message_expiry_interval` (seconds) still limits how long the
   * message waits in an offline session's queue.
   */
  properties: z
    .strictObject({
      payload_format_indicator: z.number().int().min(0).max(1).optional(),
      message_expiry_interval: z.number().int().min(0).max(0xffff_ffff).optional(),
      response_topic: z.string().optional(),
      correlation_data: z.string().optional(),
      user_properties: z.record(z.string(), z.string()).optional(),
      content_type: z.string().optional(),
    })
    .optional(),
  /** Deprecated since 5.0.14 and ignored by EMQX. */
  clientid: z.string().optional(),
});

export type PublishResult =
  | { delivered: true; body: { id: string } }
  | { delivered: false; body: { reason_code: 16; message: 'no_matching_subscribers' } };

/** A message rejected before publishing; `body` is the EMQX error body to answer 400 with. */
export class PublishRejected extends Error {
  constructor(readonly body: { code: string; message: string } | { reason_code: number; message: string }) {
    super(body.message);
  }
}

interface PreparedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** In mqtt-packet's form, ready for the PUBLISH to MQTT 5 subscribers. */
  properties?: MqttProperties;
}

/** mqtt.max_packet_size default. */
const MAX_PACKET_SIZE = 1024 * 1024;

export class MessagePublisher {
  /** Per packet published through REST: its id and whether a subscriber matched (looked up once). */
  private readonly published = new WeakMap<object, { id: string; matched: boolean }>();

  constructor(
    private readonly aedes: Aedes,
    private readonly sessions: SessionRegistry,
  ) {}

  /** Validates one request body; throws PublishRejected. */
  prepare(body: unknown): PreparedMessage {
    const parsed = PublishRequest.safeParse(body);
    if (!parsed.success) throw new PublishRejected({ code: 'BAD_REQUEST', message: describeZodError(parsed.error) });
    const request = parsed.data;
    if (!isValidTopicName(request.topic)) throw new PublishRejected({ reason_code: 144, message: 'topic_name_invalid' });
    const payload = decodePayload(request.payload, request.payload_encoding);
    if (payload.length + Buffer.byteLength(request.topic) > MAX_PACKET_SIZE) {
      throw new PublishRejected({ reason_code: 151, message: 'packet_too_large' });
    }
    const properties = request.properties ? packetProperties(request.properties) : undefined;
    return { topic: request.topic, payload, qos: request.qos as 0 | 1 | 2, retain: request.retain, ...(properties ? { properties } : {}) };
  }

  async publish(message: PreparedMessage): Promise<PublishResult> {
    const matched = this.sessions.hasSubscriberFor(message.topic);
    const id = newMessageId();
    const packet = publishPacket(message);
    this.published.set(packet, { id, matched });
    await new Promise<void>((resolve, reject) => this.aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
    return matched
      ? { delivered: true, body: { id } }
      : { delivered: false, body: { reason_code: 16, message: 'no_matching_subscribers' } };
  }

  /** The id returned to the REST caller, so the `message.publish` event carries the same one. */
  messageIdOf(packet: object): string | undefined {
    return this.published.get(packet)?.id;
  }

  /** Whether a subscriber matched a packet published through REST (undefined for MQTT publishes). */
  matchedOf(packet: object): boolean | undefined {
    return this.published.get(packet)?.matched;
  }
}

/** The PUBLISH the broker sends for a message of its own (REST publishes, queued messages). */
export function publishPacket(message: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; properties?: MqttProperties | undefined }): PublishPacket {
  return {
    cmd: 'publish',
    topic: message.topic,
    payload: message.payload,
    qos: message.qos,
    retain: message.retain,
    dup: false,
    ...(message.properties ? { properties: message.properties } : {}),
  };
}

/**
 * REST properties as the PUBLISH carries them (emqx_mgmt_api_publish.erl `to_property/3`): the
 * Payload-Format-Indicator as a flag and Correlation-Data as bytes, as mqtt-packet encodes them.
 * An empty object carries no properties, as in `make_message/1`.
 */
function packetProperties(rest: NonNullable<z.infer<typeof PublishRequest>['properties']>): MqttProperties | undefined {
  const properties: MqttProperties = {};
  if (rest.payload_format_indicator !== undefined) properties.payloadFormatIndicator = rest.payload_format_indicator === 1;
  if (rest.message_expiry_interval !== undefined) properties.messageExpiryInterval = rest.message_expiry_interval;
  if (rest.response_topic !== undefined) properties.responseTopic = rest.response_topic;
  if (rest.correlation_data !== undefined) properties.correlationData = Buffer.from(rest.correlation_data, 'utf8');
  if (rest.user_properties !== undefined) properties.userProperties = rest.user_properties;
  if (rest.content_type !== undefined) properties.contentType = rest.content_type;
  return Object.keys(properties).length > 0 ? properties : undefined;
}

function decodePayload(payload: string, encoding: 'plain' | 'base64'): Buffer {
  if (encoding === 'plain') return Buffer.from(payload, 'utf8');
  const compact = payload.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    throw new PublishRejected({ reason_code: 131, message: 'payload_base64_decode_failed' });
  }
  return Buffer.from(compact, 'base64');
}
