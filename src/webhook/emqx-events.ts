import { z } from 'zod';
import { ClientId } from '../domain/schemas/device';
import { presenceEventKey, type PresenceEvent } from '../domain/presence';
import type { DeviceEvent, StoredConnectionEvent } from '../store';

/**
 * EMQX 5 rule-engine HTTP-action bodies (`SELECT *` output, one object or an array; fields per event in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_events.erl), validated field
 * by field and turned into what the adapter stores and signals. Unknown event types are accepted and counted,
 * not failed: a rule may select more than we use.
 */

/** Epoch milliseconds, as rule-engine events carry them; bounded so `new Date()` cannot throw. */
const Millis = z.int('must be an integer (epoch milliseconds)').min(0, 'must not be negative').max(8_640_000_000_000_000, 'is out of range');
const Topic = z.string().min(1, 'must not be empty').max(4_096, 'must be at most 4096 characters');
const QosValue = z.int('must be an integer').min(0, 'must be 0, 1 or 2').max(2, 'must be 0, 1 or 2');

const ClientConnected = z.looseObject({
  event: z.literal('client.connected'),
  clientid: ClientId,
  connected_at: Millis,
});

const ClientDisconnected = z.looseObject({
  event: z.literal('client.disconnected'),
  clientid: ClientId,
  connected_at: Millis,
  disconnected_at: Millis,
  reason: z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters'),
});

const SessionSubscription = z.looseObject({
  event: z.enum(['session.subscribed', 'session.unsubscribed']),
  clientid: ClientId,
  topic: Topic,
  qos: QosValue.default(0),
  timestamp: Millis,
});

const MessagePublish = z.looseObject({
  event: z.literal('message.publish'),
  id: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters'),
  clientid: ClientId,
  topic: Topic,
  qos: QosValue,
  payload: z.string(),
  publish_received_at: Millis,
});

const KnownEvent = z.discriminatedUnion('event', [ClientConnected, ClientDisconnected, SessionSubscription, MessagePublish]);
type KnownEvent = z.infer<typeof KnownEvent>;

export const KNOWN_EVENTS = ['client.connected', 'client.disconnected', 'session.subscribed', 'session.unsubscribed', 'message.publish'] as const;

/** What is wrong with an event's name, if anything (checked by hand: this runs for every event). */
function eventNameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'must be a string';
  if (name.length === 0) return 'must not be empty';
  return name.length > 128 ? 'must be at most 128 characters' : null;
}

/** More events in one request than EMQX ever batches is an attack, not a delivery. */
export const MAX_EVENTS_PER_REQUEST = 1_000;

export interface ParsedEvents {
  connections: StoredConnectionEvent[];
  deviceEvents: DeviceEvent[];
  /** Event names of the accepted events, known or not (for counting). */
  names: string[];
  /** How many had an event type we do not use. */
  ignored: number;
}

export class InvalidEventError extends Error {
  readonly type = 'InvalidEventError';
}

/** Validates one body; throws InvalidEventError naming the first bad field (`[3].connected_at: ...`). */
export function parseEventBody(body: unknown, receivedAt: Date): ParsedEvents {
  const items = Array.isArray(body) ? body : [body];
  const prefix = (i: number): string => (Array.isArray(body) ? `[${i}]` : '');
  if (Array.isArray(body) && body.length === 0) throw new InvalidEventError('body: must hold at least one event');
  if (items.length > MAX_EVENTS_PER_REQUEST) throw new InvalidEventError(`body: at most ${MAX_EVENTS_PER_REQUEST} events per request`);
  const parsed: ParsedEvents = { connections: [], deviceEvents: [], names: [], ignored: 0 };
  const received = receivedAt.toISOString();
  items.forEach((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new InvalidEventError(`${prefix(i) || 'body'}: must be an event object`);
    const name = (item as { event?: unknown }).event;
    const problem = eventNameProblem(name);
    if (problem) throw new InvalidEventError(`${prefix(i) ? `${prefix(i)}.` : ''}event: ${problem}`);
    parsed.names.push(name as string);
    if (!(KNOWN_EVENTS as readonly string[]).includes(name as string)) {
      parsed.ignored++;
      return;
    }
    const event = KnownEvent.safeParse(item);
    if (!event.success) throw invalid(prefix(i), event.error);
    addEvent(parsed, event.data, received);
  });
  return parsed;
}

function invalid(prefix: string, error: z.ZodError): InvalidEventError {
  const issue = error.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  const field = [prefix, path].filter(Boolean).join('.');
  return new InvalidEventError(`${field || 'body'}: ${issue?.message ?? 'is invalid'}`);
}

const iso = (ms: number): string => new Date(ms).toISOString();

function addEvent(parsed: ParsedEvents, event: KnownEvent, receivedAt: string): void {
  switch (event.event) {
    case 'client.connected':
      parsed.connections.push({
        key: presenceEventKey.connected(event.clientid, event.connected_at),
        clientId: event.clientid,
        event: 'connected',
        at: iso(event.connected_at),
        connectedAt: event.connected_at,
        receivedAt,
      });
      return;
    case 'client.disconnected':
      parsed.connections.push({
        key: presenceEventKey.disconnected(event.clientid, event.connected_at),
        clientId: event.clientid,
        event: 'disconnected',
        at: iso(event.disconnected_at),
        reason: event.reason,
        connectedAt: event.connected_at,
        receivedAt,
      });
      return;
    case 'session.subscribed':
    case 'session.unsubscribed':
      parsed.deviceEvents.push({
        key: deviceEventKey(event.event, event.clientid, event.topic, event.timestamp),
        clientId: event.clientid,
        event: event.event,
        at: iso(event.timestamp),
        topic: event.topic,
        qos: event.qos,
        receivedAt,
      });
      return;
    case 'message.publish':
      parsed.deviceEvents.push({
        key: deviceEventKey('message.publish', event.id),
        clientId: event.clientid,
        event: 'message.publish',
        at: iso(event.publish_received_at),
        topic: event.topic,
        qos: event.qos,
        payload: event.payload,
        messageId: event.id,
        receivedAt,
      });
      return;
  }
}

/**
 * A device event's stable key: its identifying fields as a JSON array, which no choice of client
 * id, topic or message id can make equal to another event's (joining with a separator cannot
 * promise that: client id `a|b` with topic `c` and client id `a` with topic `b|c` would collide).
 */
export function deviceEventKey(...fields: [DeviceEvent['event'], ...(string | number)[]]): string {
  return JSON.stringify(fields);
}

/** What the device workflow receives for a stored connect or disconnect. */
export function toPresenceEvent(stored: StoredConnectionEvent): PresenceEvent {
  return stored.event === 'connected'
    ? { kind: 'connected', key: stored.key, connectedAt: stored.connectedAt }
    : { kind: 'disconnected', key: stored.key, connectedAt: stored.connectedAt, disconnectedAt: Date.parse(stored.at), reason: stored.reason ?? 'unknown' };
}
