import { randomBytes } from 'node:crypto';
import type { SessionFacts } from './sessions';

/** The node name EMQX reports for a single local node; every `node` field carries it. */
export const NODE_NAME = 'emqx@127.0.0.1';
export const EMQX_VERSION = '5.8.9';

/**
 * RFC 3339 with milliseconds and the local UTC offset, the form EMQX uses for `connected_at`,
 * `created_at` and `disconnected_at` in the clients API
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl).
 */
export function rfc3339(epochMs: number): string {
  const date = new Date(epochMs);
  const offsetMinutes = -date.getTimezoneOffset();
  const local = new Date(epochMs + offsetMinutes * 60_000).toISOString().slice(0, 23);
  const sign = offsetMinutes >= 0 ? '+' : '-';
  const abs = Math.abs(offsetMinutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${local}${sign}${hh}:${mm}`;
}

/** A message GUID as EMQX prints it: 16 bytes, 32 upper-case hex characters. */
export function newMessageId(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

/** A subscription as `GET /clients/{id}/subscriptions` and `GET /subscriptions` show it. */
interface SubscriptionView {
  node: string;
  topic: string;
  clientid: string;
  qos: number;
  nl: number;
  rap: number;
  rh: number;
  durable: false;
}

/** The subscriptions of a connected client or of an offline persistent session (EMQX keeps both routed). */
export function subscriptionView(session: SessionFacts): SubscriptionView[] {
  return [...session.subscriptions.entries()].map(([topic, o]) => ({
    node: NODE_NAME,
    topic,
    clientid: session.clientid,
    qos: o.qos,
    nl: o.nl,
    rap: o.rap,
    rh: o.rh,
    durable: false,
  }));
}
