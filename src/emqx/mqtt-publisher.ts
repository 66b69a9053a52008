/**
 * Publishing to devices over MQTT instead of the REST API: one long-lived client per worker process,
 * logged in as a service user that the ACL allows to publish to device topics.
 *
 * What an MQTT publish can tell: with MQTT 5 and QoS >= 1, EMQX answers PUBACK (QoS 2: PUBREC)
 * reason code 16 ("No matching subscribers") when nobody subscribed, like REST's 202
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl `puback_reason_code/3`);
 * with MQTT 3.1.1 (and QoS 0) a publish the broker accepted is all we learn, so every accepted
 * message counts as published.
 */
import mqtt, { type MqttClient, type Packet } from 'mqtt';

export interface MqttPublisherOptions {
  url: string;
  username?: string;
  /** Never logged; only passed to the MQTT CONNECT. */
  password?: string;
  clientId: string;
  /** 5 enables no-subscriber detection and MQTT 5 properties. */
  protocolVersion: 4 | 5;
  /** How long to wait for a PUBACK before calling the attempt failed (retryable). */
  ackTimeoutMs?: number;
}

export interface MqttMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  messageExpiryInterval?: number;
  userProperties?: Record<string, string>;
  responseTopic?: string;
  correlationData?: Buffer;
}

export type MqttPublishOutcome =
  | { status: 'published' }
  | { status: 'no_subscriber' }
  | { status: 'failed'; message: string; retryable: boolean };

/** MQTT 5 reason code 16, "No matching subscribers" (a success code). */
const NO_MATCHING_SUBSCRIBERS = 16;

export class MqttPublisher {
  /**
   * Message ids whose latest PUBACK/PUBREC carried reason code 16. mqtt.js settles a publish with
   * the PUBLISH it sent, not the acknowledgement (lib/handlers/ack.js hands the stored packet to
   * the callback; codes >= 0x80 alone become errors), so the code is read from the acknowledgement
   * as it arrives, which is before the publish settles.
   */
  private readonly unmatched = new Set<number>();

  private constructor(
    private readonly client: MqttClient,
    private readonly options: MqttPublisherOptions,
  ) {
    client.on('packetreceive', (packet: Packet) => {
      if ((packet.cmd !== 'puback' && packet.cmd !== 'pubrec') || packet.messageId === undefined) return;
      if (packet.reasonCode === NO_MATCHING_SUBSCRIBERS) this.unmatched.add(packet.messageId);
      else this.unmatched.delete(packet.messageId);
    });
  }

  /** Starts connecting (and reconnecting) in the background; publishing fails retryably while offline. */
  static start(options: MqttPublisherOptions): MqttPublisher {
    const client = mqtt.connect(options.url, {
      clientId: options.clientId,
      username: options.username,
      password: options.password,
      protocolVersion: options.protocolVersion,
      clean: true,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
    });
    // Connection errors surface as failed publishes; the error event must have a listener.
    client.on('error', () => undefined);
    return new MqttPublisher(client, options);
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Resolves once connected, or rejects after `timeoutMs`. */
  async waitConnected(timeoutMs = 10_000): Promise<void> {
    if (this.client.connected) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.client.removeListener('connect', onConnect);
        reject(new Error(`MQTT publisher not connected to ${withoutUserInfo(this.options.url)} after ${timeoutMs} ms`));
      }, timeoutMs);
      const onConnect = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.client.once('connect', onConnect);
    });
  }

  /** Publishes every message (in parallel, bounded by the broker's receive maximum); outcomes in order. */
  async publishBatch(messages: readonly MqttMessage[]): Promise<MqttPublishOutcome[]> {
    if (!this.client.connected) {
      return messages.map(() => ({ status: 'failed', message: 'MQTT publisher is not connected', retryable: true }));
    }
    return Promise.all(messages.map((m) => this.publishOne(m)));
  }

  private async publishOne(message: MqttMessage): Promise<MqttPublishOutcome> {
    const v5 = this.options.protocolVersion === 5;
    const properties =
      v5 && (message.messageExpiryInterval !== undefined || message.userProperties || message.responseTopic !== undefined || message.correlationData)
        ? {
            ...(message.messageExpiryInterval !== undefined ? { messageExpiryInterval: message.messageExpiryInterval } : {}),
            ...(message.userProperties ? { userProperties: message.userProperties } : {}),
            ...(message.responseTopic !== undefined ? { responseTopic: message.responseTopic } : {}),
            ...(message.correlationData ? { correlationData: message.correlationData } : {}),
          }
        : undefined;
    const ackTimeoutMs = this.options.ackTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<MqttPublishOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ status: 'failed', message: `no PUBACK within ${ackTimeoutMs} ms`, retryable: true }), ackTimeoutMs);
    });
    const publish = this.client
      .publishAsync(message.topic, message.payload, { qos: message.qos, retain: message.retain, ...(properties ? { properties } : {}) })
      .then((sent): MqttPublishOutcome => {
        const messageId = sent?.messageId;
        const unmatched = messageId !== undefined && this.unmatched.delete(messageId);
        return unmatched ? { status: 'no_subscriber' } : { status: 'published' };
      })
      .catch((err: unknown): MqttPublishOutcome => {
        const reasonCode = (err as { code?: number }).code;
        // Reason codes >= 0x80 are refusals (e.g. 135 not authorized): retrying will not help.
        const refused = typeof reasonCode === 'number' && reasonCode >= 0x80;
        return { status: 'failed', message: `MQTT publish failed: ${err instanceof Error ? err.message : String(err)}`, retryable: !refused };
      });
    try {
      return await Promise.race([publish, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

/** The campaign publisher the configuration asks for (CAMPAIGN_MQTT_*), or none. */
export function mqttPublisherFromConfig(config: {
  CAMPAIGN_MQTT_URL?: string | undefined;
  CAMPAIGN_MQTT_USERNAME?: string | undefined;
  CAMPAIGN_MQTT_PASSWORD?: string | undefined;
  CAMPAIGN_MQTT_PROTOCOL_VERSION: 4 | 5;
}, clientId: string): MqttPublisher | undefined {
  if (!config.CAMPAIGN_MQTT_URL) return undefined;
  return MqttPublisher.start({
    url: config.CAMPAIGN_MQTT_URL,
    clientId,
    protocolVersion: config.CAMPAIGN_MQTT_PROTOCOL_VERSION,
    ...(config.CAMPAIGN_MQTT_USERNAME ? { username: config.CAMPAIGN_MQTT_USERNAME } : {}),
    ...(config.CAMPAIGN_MQTT_PASSWORD ? { password: config.CAMPAIGN_MQTT_PASSWORD } : {}),
  });
}

/** The URL for messages: credentials written into it (`mqtt://user:pass@host`) are left out. */
function withoutUserInfo(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}
