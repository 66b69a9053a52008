import type { AlarmPolicy } from './schemas/device';
import { CONTROL_CHARS } from './device';

/**
 * Presence and offline-alarm shapes, shared by the webhook adapter (which produces presence
 * events), the device workflow (which orders them and runs the alarm), activities (which store
 * alarms) and the starter (which reads them). Pure: safe to bundle into workflow code.
 */

export type Presence = 'online' | 'offline' | 'unknown';

/** The device workflow's id. */
export const presenceWorkflowId = (clientId: string): string => `device/${clientId}`;

/**
 * A connect or disconnect as the device workflow receives it. `connectedAt` (EMQX's clock, ms)
 * names the session: events are ordered by it, never by arrival (https://github.com/emqx/emqx/issues/12954).
 * `observed` comes from reconciliation: what EMQX's live client list showed at `observedAt`.
 */
export type PresenceEvent =
  | { kind: 'connected'; key: string; connectedAt: number }
  | { kind: 'disconnected'; key: string; connectedAt: number; disconnectedAt: number; reason: string }
  | { kind: 'observed'; key: string; online: boolean; observedAt: number; connectedAt?: number };

/**
 * Disconnect reasons of a session that a newer session of the same client replaced
 * (emqx_cm:open_session): the device is not offline, the old connection is.
 */
export const SUPERSEDED_REASONS: readonly string[] = ['takenover', 'discarded'];

/** Stable keys, so EMQX's retries and duplicates are stored and applied once. */
export const presenceEventKey = {
  connected: (clientId: string, connectedAt: number) => `${clientId}|connected|${connectedAt}`,
  /** One disconnect per session: the session's `connected_at` identifies it. */
  disconnected: (clientId: string, connectedAt: number) => `${clientId}|disconnected|${connectedAt}`,
};

export type AlarmKind = 'offline' | 'flapping';
export type AlarmState = 'active' | 'acknowledged' | 'cleared';
export type AlarmClearedBy = 'reconnect' | 'operator' | 'stable' | 'deprovisioned';

/** One alarm of one device, as recorded in MongoDB and shown by `alarms`/`status`. */
export interface Alarm {
  /** `<clientId>|<kind>|<raisedAt ms>`: deterministic, so a retried write lands on the same document. */
  alarmId: string;
  clientId: string;
  kind: AlarmKind;
  level: number;
  state: AlarmState;
  raisedAt: string;
  updatedAt: string;
  /** When the device went offline (event time), for offline alarms. */
  offlineSince?: string;
  acknowledgedAt?: string;
  clearedAt?: string;
  clearedBy?: AlarmClearedBy;
  /** Operator notes given with ack or clear. */
  note?: string;
  /** Every level and state change, oldest first. */
  changes: AlarmChange[];
}

export interface AlarmChange {
  level: number;
  state: AlarmState;
  at: string;
  change: 'raised' | 'escalated' | 'acknowledged' | 'cleared';
  by?: AlarmClearedBy;
}

export function isOpen(alarm: Alarm | null | undefined): alarm is Alarm {
  return alarm !== null && alarm !== undefined && alarm.state !== 'cleared';
}

/** The alarm policy the device workflow runs with: grace and escalation (per device or default), flapping detection. */
/** The policy a device workflow applies: the device's own, completed by the worker's defaults. */
export interface PresencePolicy extends Required<Pick<AlarmPolicy, 'graceMs' | 'escalationMs'>> {
  /** This many disconnects inside `flapWindowMs` raise one flapping alarm instead of offline alarms. */
  flapThreshold: number;
  flapWindowMs: number;
  /** False for a deprovisioned device: presence is still recorded, no alarm is raised. */
  monitored: boolean;
  /** How many desired proxy subscriptions the record holds: none means nothing to re-apply on connect. */
  desiredSubscriptions: number;
  /**
   * False when the worker has no alarm webhook (ALARM_WEBHOOK_URL unset): alarm changes are recorded
   * only, and no notification activity (a Temporal action) is scheduled. Absent means true.
   */
  notifies?: boolean;
}


/** An operator's ack or clear: an optional note, free text, short, printable. */
export interface AlarmAction {
  note?: string;
}

const ALARM_NOTE_MAX = 500;

/** Why a note cannot be taken, or null (the device workflow's update validator; ./schemas/presence has the schema). */
export function alarmNoteProblem(note: unknown): string | null {
  if (typeof note !== 'string') return 'must be a string';
  if (note.length > ALARM_NOTE_MAX) return `must be at most ${ALARM_NOTE_MAX} characters`;
  if (CONTROL_CHARS.test(note)) return 'must not contain control characters';
  return null;
}

/** Why an ack or clear request cannot be taken (naming the field), or null. */
export function alarmActionProblem(action: unknown): string | null {
  if (action === null || typeof action !== 'object' || Array.isArray(action)) return 'must be an object';
  for (const [key, value] of Object.entries(action)) {
    if (key !== 'note') return `${key}: is not a field of an alarm action`;
    if (value === undefined) continue;
    const problem = alarmNoteProblem(value);
    if (problem) return `note: ${problem}`;
  }
  return null;
}
