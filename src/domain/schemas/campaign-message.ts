import type { CampaignTarget, MessageTemplate } from './campaign';
import { renderJson, renderText, renderTopic } from './campaign-template';

/**
 * One target's message, rendered from the campaign template: the topic and text/JSON payload with
 * `${clientid}` and the target's values filled in. Throws TemplateError when a target cannot be
 * rendered (the starter renders every target once before a campaign starts, so this is rare).
 */
export interface RenderedMessage {
  topic: string;
  /** Text, or base64 when `binary`. */
  payload: string;
  binary: boolean;
  qos: 0 | 1 | 2;
  retain: boolean;
  messageExpiryInterval?: number;
  userProperties?: Record<string, string>;
  responseTopic?: string;
  correlationData?: string;
}

export function renderMessage(template: MessageTemplate, target: CampaignTarget): RenderedMessage {
  const { clientId, values } = target;
  const topic = renderTopic(template.topic, clientId, values);
  const p = template.payload;
  const payload = p.format === 'base64' ? p.data : p.format === 'json' ? renderJson(p.text, clientId, values) : renderText(p.text, clientId, values);
  const message: RenderedMessage = { topic, payload, binary: p.format === 'base64', qos: template.qos, retain: template.retain };
  const props = template.properties;
  if (props?.messageExpiryInterval !== undefined) message.messageExpiryInterval = props.messageExpiryInterval;
  if (props?.userProperties) message.userProperties = props.userProperties;
  if (props?.responseTopic !== undefined) message.responseTopic = renderTopic(props.responseTopic, clientId, values);
  if (props?.correlationData !== undefined) message.correlationData = props.correlationData;
  return message;
}

/** Encoded size as EMQX checks it against `max_packet_size` (topic + payload bytes). */
export function messageBytes(message: RenderedMessage): number {
  const payloadBytes = message.binary ? Math.floor((message.payload.length * 3) / 4) : utf8Length(message.payload);
  return utf8Length(message.topic) + payloadBytes;
}

/** UTF-8 length without encoding (a lone surrogate counts 3 bytes, as TextEncoder writes U+FFFD). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
