import {
  isOpen,
  SUPERSEDED_REASONS,
  type Alarm,
  type AlarmChange,
  type AlarmClearedBy,
  type AlarmKind,
  type Presence,
  type PresenceEvent,
  type PresencePolicy,
} from './presence';

/**
 * The device workflow's state machine, pure and deterministic: events, timers and operator actions
 * change the state and return the effects the workflow then carries out (activities). Kept apart
 * from the workflow so its ordering rules can be tested without Temporal.
 *
 * Ordering (https://github.com/emqx/emqx/issues/12954): EMQX delivers events unordered, duplicated and
 * sometimes not at all. A session is named by its `connected_at`; an event about an older session than the
 * current one is stale, a disconnect with reason `takenover`/`discarded` belongs to a superseded session. So
 * the final presence does not depend on the order in which events arrive.
 */

export interface Session {
  connectedAt: number;
  endedAt?: number;
  endedBy?: 'event' | 'reconcile';
  reason?: string;
}

export interface PresenceCounters {
  /** Events received (duplicates included). */
  events: number;
  duplicates: number;
  stale: number;
  superseded: number;
  sessionsStarted: number;
  sessionsEnded: number;
  alarmsRaised: number;
  /** Events of an oversized batch that were summarised instead of applied one by one (see applyEvents). */
  coalesced: number;
  /** Workflow runs so far (continue-as-new starts a new one). */
  runs: number;
}

export type RecentEventKind = 'connected' | 'disconnected' | 'observed-online' | 'observed-offline';
export type EventOutcome = 'applied' | 'duplicate' | 'stale' | 'superseded';

export interface RecentEvent {
  at: string;
  kind: RecentEventKind;
  reason?: string;
  outcome: EventOutcome;
}

export interface PresenceState {
  clientId: string;
  policy: PresencePolicy;
  presence: Presence;
  session: Session | null;
  /** Event time at which the device went offline. */
  offlineSince: number | null;
  /** The open alarm, or the last one (cleared). */
  alarm: Alarm | null;
  /** End of the grace period: raise the offline alarm then if still offline. */
  offlineAlarmDueAt: number | null;
  escalationDueAt: number | null;
  /** A flapping alarm clears once the device has stayed online for a whole flap window. */
  flappingClearDueAt: number | null;
  /**
   * The latest `flapThreshold` session ends, oldest first: enough to tell whether `flapThreshold` of
   * them fall inside the flap window, so a burst costs O(threshold) per disconnect, not O(burst).
   */
  recentDisconnects: number[];
  recent: RecentEvent[];
  /** Keys of the last events, to count duplicates (the ordering rules make them no-ops anyway). */
  seenKeys: string[];
  counters: PresenceCounters;
}

export type PresenceEffect =
  | { type: 'applySubscriptions'; connectedAt: number }
  | { type: 'recordAlarm'; alarm: Alarm }
  | { type: 'notifyAlarm'; alarm: Alarm; change: AlarmChange['change'] };

const RECENT_EVENTS = 50;
const SEEN_KEYS = 200;

const iso = (ms: number): string => new Date(ms).toISOString();

export function initialState(clientId: string, policy: PresencePolicy): PresenceState {
  return {
    clientId,
    policy,
    presence: 'unknown',
    session: null,
    offlineSince: null,
    alarm: null,
    offlineAlarmDueAt: null,
    escalationDueAt: null,
    flappingClearDueAt: null,
    recentDisconnects: [],
    recent: [],
    seenKeys: [],
    counters: { events: 0, duplicates: 0, stale: 0, superseded: 0, sessionsStarted: 0, sessionsEnded: 0, alarmsRaised: 0, coalesced: 0, runs: 1 },
  };
}

function eventTime(event: PresenceEvent): number {
  switch (event.kind) {
    case 'connected':
      return event.connectedAt;
    case 'disconnected':
      return event.disconnectedAt;
    case 'observed':
      return event.observedAt;
  }
}

/**
 * A batch (the events of every signal one workflow task received) of more events than this is
 * coalesced: the newest events are applied one by one, the older ones only counted. A workflow task
 * must finish within the SDK's 2 s deadlock limit (https://docs.temporal.io/develop/typescript/debugging#deadlock),
 * and a device that reconnects in a loop can deliver tens of thousands of events at once.
 */
export const MAX_EVENTS_APPLIED = 1_000;

/**
 * Applies a batch of events in event-time order (connects before disconnects at the same instant).
 *
 * A batch of more than MAX_EVENTS_APPLIED events is first deduplicated by key; then the events of
 * the newest session (the largest `connectedAt` the batch names) and the newest others, up to
 * MAX_EVENTS_APPLIED in all, are applied as usual. Each older event is summarised: it counts in
 * `events` and `coalesced`, a disconnect among them (not a takeover) counts toward the flap window
 * at its disconnect time, and it changes nothing else (no session, no recent entry). The final
 * presence is what applying every event would give, since it is decided by the newest session; the
 * flap window sees every session end the batch reports.
 */
export function applyEvents(state: PresenceState, events: readonly PresenceEvent[], now: number): PresenceEffect[] {
  const effects: PresenceEffect[] = [];
  const ordered = [...events].sort((a, b) => eventTime(a) - eventTime(b) || rank(a) - rank(b));
  const { applied, summarised } = events.length > MAX_EVENTS_APPLIED ? coalesce(state, ordered) : { applied: ordered, summarised: [] };
  for (const event of summarised) {
    state.counters.events++;
    state.counters.coalesced++;
    if (event.kind === 'disconnected' && !SUPERSEDED_REASONS.includes(event.reason)) noteDisconnect(state, event.disconnectedAt);
  }
  for (const event of applied) {
    state.counters.events++;
    if (state.seenKeys.includes(event.key)) {
      state.counters.duplicates++;
      continue;
    }
    state.seenKeys.push(event.key);
    if (state.seenKeys.length > SEEN_KEYS) state.seenKeys.splice(0, state.seenKeys.length - SEEN_KEYS);
    const outcome = applyOne(state, event, now, effects);
    if (outcome === 'stale') state.counters.stale++;
    if (outcome === 'superseded') state.counters.superseded++;
    remember(state, event, outcome);
  }
  // One subscription re-apply per batch, for the session that is live at its end.
  const lastApply = effects.filter((e) => e.type === 'applySubscriptions').at(-1);
  const rest = effects.filter((e) => e.type !== 'applySubscriptions');
  const live = state.presence === 'online' && lastApply !== undefined;
  return live ? [...rest, lastApply] : rest;
}

/** The session an event reports, if any: a takeover's disconnect and an offline observation name none that can be the newest. */
function sessionOf(event: PresenceEvent): number | null {
  switch (event.kind) {
    case 'connected':
      return event.connectedAt;
    case 'disconnected':
      return SUPERSEDED_REASONS.includes(event.reason) ? null : event.connectedAt;
    case 'observed':
      return event.online ? (event.connectedAt ?? event.observedAt) : null;
  }
}

/** Splits an oversized batch (in event-time order) as applyEvents describes, in O(batch). */
function coalesce(state: PresenceState, ordered: readonly PresenceEvent[]): { applied: PresenceEvent[]; summarised: PresenceEvent[] } {
  const seen = new Set(state.seenKeys);
  const unique: PresenceEvent[] = [];
  for (const event of ordered) {
    if (seen.has(event.key)) {
      state.counters.events++;
      state.counters.duplicates++;
      continue;
    }
    seen.add(event.key);
    unique.push(event);
  }
  let newest = -Infinity;
  for (const event of unique) newest = Math.max(newest, sessionOf(event) ?? -Infinity);
  const keep = new Array<boolean>(unique.length).fill(false);
  let kept = 0;
  // The newest session's own events first (a connect and a disconnect, perhaps an observation), newest first.
  for (let i = unique.length - 1; i >= 0 && kept < MAX_EVENTS_APPLIED / 2; i--) {
    if (sessionOf(unique[i] as PresenceEvent) === newest) {
      keep[i] = true;
      kept++;
    }
  }
  for (let i = unique.length - 1; i >= 0 && kept < MAX_EVENTS_APPLIED; i--) {
    if (!keep[i]) {
      keep[i] = true;
      kept++;
    }
  }
  return { applied: unique.filter((_, i) => keep[i]), summarised: unique.filter((_, i) => !keep[i]) };
}

function rank(event: PresenceEvent): number {
  return event.kind === 'connected' ? 0 : event.kind === 'disconnected' ? 1 : 2;
}

function applyOne(state: PresenceState, event: PresenceEvent, now: number, effects: PresenceEffect[]): EventOutcome {
  const session = state.session;
  switch (event.kind) {
    case 'connected':
      if (session && event.connectedAt <= session.connectedAt) return 'stale';
      startSession(state, event.connectedAt, now, effects);
      return 'applied';
    case 'disconnected':
      if (SUPERSEDED_REASONS.includes(event.reason)) return 'superseded';
      if (session && event.connectedAt < session.connectedAt) return 'stale';
      if (session && event.connectedAt === session.connectedAt && session.endedAt !== undefined) return 'stale';
      // A disconnect of a session whose connect never arrived: the session existed, then ended.
      if (!session || event.connectedAt > session.connectedAt) startSession(state, event.connectedAt, now, effects);
      endSession(state, event.disconnectedAt, event.reason, 'event', now, effects);
      return 'applied';
    case 'observed':
      return event.online ? observeOnline(state, event.connectedAt ?? event.observedAt, now, effects) : observeOffline(state, event.observedAt, now, effects);
  }
}

/** EMQX lists the client as connected since `connectedAt`. */
function observeOnline(state: PresenceState, connectedAt: number, now: number, effects: PresenceEffect[]): EventOutcome {
  const session = state.session;
  const reopen = session?.connectedAt === connectedAt && session.endedBy === 'reconcile';
  if (session && connectedAt <= session.connectedAt && !reopen) return 'stale';
  if (reopen) state.counters.sessionsEnded--;
  startSession(state, connectedAt, now, effects, { reopen });
  return 'applied';
}

/**
 * EMQX did not list the client at `observedAt`. Only a session that began before the listing can
 * have ended unseen; a newer one is news the listing could not know.
 */
function observeOffline(state: PresenceState, observedAt: number, now: number, effects: PresenceEffect[]): EventOutcome {
  const session = state.session;
  if (session && session.endedAt === undefined && session.connectedAt < observedAt) {
    endSession(state, observedAt, 'reconciled', 'reconcile', now, effects);
    return 'applied';
  }
  if (!session && state.presence === 'unknown') {
    state.presence = 'offline';
    return 'applied';
  }
  return 'stale';
}

function startSession(state: PresenceState, connectedAt: number, now: number, effects: PresenceEffect[], opts: { reopen?: boolean } = {}): void {
  const previous = state.session;
  // The previous session ended without a disconnect we saw (dropped, or a takeover): still a disconnect.
  if (previous && previous.endedAt === undefined && !opts.reopen) {
    state.counters.sessionsEnded++;
    noteDisconnect(state, connectedAt);
  }
  state.session = { connectedAt };
  state.presence = 'online';
  state.offlineSince = null;
  state.offlineAlarmDueAt = null;
  if (!opts.reopen) state.counters.sessionsStarted++;
  if (isOpen(state.alarm) && state.alarm.kind === 'offline') clearAlarm(state, 'reconnect', now, effects);
  if (isOpen(state.alarm) && state.alarm.kind === 'flapping') state.flappingClearDueAt = now + state.policy.flapWindowMs;
  effects.push({ type: 'applySubscriptions', connectedAt });
}

function endSession(state: PresenceState, at: number, reason: string, by: 'event' | 'reconcile', now: number, effects: PresenceEffect[]): void {
  const session = state.session;
  if (!session) return;
  session.endedAt = at;
  session.endedBy = by;
  session.reason = reason;
  state.presence = 'offline';
  state.offlineSince = at;
  state.flappingClearDueAt = null;
  state.counters.sessionsEnded++;
  noteDisconnect(state, at);
  if (!state.policy.monitored || isOpen(state.alarm)) return;
  if (isFlapping(state.recentDisconnects, state.policy.flapThreshold, state.policy.flapWindowMs)) {
    raiseAlarm(state, 'flapping', now, effects);
    return;
  }
  // Grace counts from the disconnect; an event time ahead of ours (clock skew) counts from now.
  state.offlineAlarmDueAt = Math.min(at, now) + state.policy.graceMs;
}

function noteDisconnect(state: PresenceState, at: number): void {
  noteSessionEnd(state.recentDisconnects, at, state.policy.flapThreshold);
}

/**
 * Adds a session end to `latest` (ascending), keeping only the newest `threshold`. Flapping asks
 * whether `threshold` ends fall within one window before the newest end; those would be the newest
 * `threshold` ends, so older ones can be dropped without changing the answer.
 */
export function noteSessionEnd(latest: number[], at: number, threshold: number): void {
  if (latest.length >= threshold && at <= (latest[0] as number)) {
    if (latest.length > threshold) latest.splice(0, latest.length - threshold);
    return;
  }
  let i = latest.length;
  while (i > 0 && (latest[i - 1] as number) > at) i--;
  latest.splice(i, 0, at);
  if (latest.length > threshold) latest.splice(0, latest.length - threshold);
}

/** `threshold` session ends inside the window that ends at the newest one. */
export function isFlapping(latest: readonly number[], threshold: number, windowMs: number): boolean {
  if (latest.length < threshold) return false;
  const newest = latest[latest.length - 1] as number;
  return (latest[latest.length - threshold] as number) > newest - windowMs;
}

function raiseAlarm(state: PresenceState, kind: AlarmKind, now: number, effects: PresenceEffect[]): void {
  const at = iso(now);
  state.alarm = {
    alarmId: `${state.clientId}|${kind}|${now}`,
    clientId: state.clientId,
    kind,
    level: 1,
    state: 'active',
    raisedAt: at,
    updatedAt: at,
    ...(state.offlineSince !== null ? { offlineSince: iso(state.offlineSince) } : {}),
    changes: [{ level: 1, state: 'active', at, change: 'raised' }],
  };
  state.counters.alarmsRaised++;
  state.offlineAlarmDueAt = null;
  state.escalationDueAt = escalationTime(state, 1);
  announce(state, 'raised', effects);
}

/**
 * Escalation steps are delays after the alarm was raised (ALARM_ESCALATION_STEPS: "15m,1h" means
 * level 2 after 15 minutes, level 3 after an hour); a step shorter than the one before it fires
 * right after it.
 */
function escalationTime(state: PresenceState, currentLevel: number): number | null {
  const alarm = state.alarm;
  const step = state.policy.escalationMs[currentLevel - 1];
  if (!alarm || step === undefined) return null;
  return Date.parse(alarm.raisedAt) + step;
}

function escalate(state: PresenceState, now: number, effects: PresenceEffect[]): void {
  const alarm = state.alarm;
  if (!alarm || alarm.state !== 'active') return;
  const at = iso(now);
  alarm.level++;
  alarm.updatedAt = at;
  alarm.changes.push({ level: alarm.level, state: 'active', at, change: 'escalated' });
  const next = escalationTime(state, alarm.level);
  state.escalationDueAt = next === null ? null : Math.max(next, now);
  announce(state, 'escalated', effects);
}

function clearAlarm(state: PresenceState, by: AlarmClearedBy, now: number, effects: PresenceEffect[], note?: string): void {
  const alarm = state.alarm;
  if (!isOpen(alarm)) return;
  const at = iso(now);
  alarm.state = 'cleared';
  alarm.clearedAt = at;
  alarm.clearedBy = by;
  alarm.updatedAt = at;
  if (note !== undefined) alarm.note = note;
  alarm.changes.push({ level: alarm.level, state: 'cleared', at, change: 'cleared', by });
  state.escalationDueAt = null;
  state.flappingClearDueAt = null;
  announce(state, 'cleared', effects);
}

function announce(state: PresenceState, change: AlarmChange['change'], effects: PresenceEffect[]): void {
  if (!state.alarm) return;
  // Effects carry copies: the state keeps changing while an activity is scheduled.
  const alarm = structuredCopy(state.alarm);
  effects.push({ type: 'recordAlarm', alarm }, { type: 'notifyAlarm', alarm, change });
}

function structuredCopy(alarm: Alarm): Alarm {
  return { ...alarm, changes: alarm.changes.map((c) => ({ ...c })) };
}

function remember(state: PresenceState, event: PresenceEvent, outcome: EventOutcome): void {
  const kind: RecentEventKind = event.kind === 'observed' ? (event.online ? 'observed-online' : 'observed-offline') : event.kind;
  state.recent.push({
    at: iso(eventTime(event)),
    kind,
    ...(event.kind === 'disconnected' ? { reason: event.reason } : {}),
    outcome,
  });
  if (state.recent.length > RECENT_EVENTS) state.recent.splice(0, state.recent.length - RECENT_EVENTS);
}

/** Raises, escalates or clears whatever is due at `now`. */
export function fireDueTimers(state: PresenceState, now: number): PresenceEffect[] {
  const effects: PresenceEffect[] = [];
  if (state.offlineAlarmDueAt !== null && now >= state.offlineAlarmDueAt) {
    state.offlineAlarmDueAt = null;
    if (state.presence === 'offline' && state.policy.monitored && !isOpen(state.alarm)) raiseAlarm(state, 'offline', now, effects);
  }
  if (state.escalationDueAt !== null && now >= state.escalationDueAt) {
    state.escalationDueAt = null;
    escalate(state, now, effects);
  }
  if (state.flappingClearDueAt !== null && now >= state.flappingClearDueAt) {
    state.flappingClearDueAt = null;
    if (state.presence === 'online' && state.alarm?.kind === 'flapping') clearAlarm(state, 'stable', now, effects);
  }
  return effects;
}

/** The next time something is due, or null. */
export function nextDeadline(state: PresenceState): number | null {
  const due = [state.offlineAlarmDueAt, state.escalationDueAt, state.flappingClearDueAt].filter((t): t is number => t !== null);
  return due.length > 0 ? Math.min(...due) : null;
}

/**
 * The timer to start so the workflow wakes by `deadline`, given the fire time of the timer already
 * running (null: none); null when none is needed. Each timer started is a Temporal action, so a
 * running timer that fires no later than the deadline is kept: when it fires early, nothing is due
 * and the next call starts one for the rest. A deadline that keeps moving later (a flapping device
 * pushes its flapping-clear time on every connect) then costs one timer per interval, not one per event.
 */
export function timerToStart(deadline: number | null, running: number | null): number | null {
  if (deadline === null) return null;
  return running !== null && running <= deadline ? null : deadline;
}

/** Why an acknowledgement is refused, or null when it is allowed. */
export function acknowledgeRefusal(state: PresenceState | null): string | null {
  if (!state || !isOpen(state.alarm)) return `${state?.clientId ?? 'the device'} has no open alarm`;
  if (state.alarm.state === 'acknowledged') return `the alarm of ${state.clientId} is already acknowledged`;
  return null;
}

export function clearRefusal(state: PresenceState | null): string | null {
  if (!state || !isOpen(state.alarm)) return `${state?.clientId ?? 'the device'} has no open alarm`;
  return null;
}

/** Acknowledging stops escalation; the alarm stays open until reconnect or clear. */
export function acknowledge(state: PresenceState, note: string | undefined, now: number): PresenceEffect[] {
  const alarm = state.alarm;
  if (acknowledgeRefusal(state) !== null || !alarm) return [];
  const at = iso(now);
  alarm.state = 'acknowledged';
  alarm.acknowledgedAt = at;
  alarm.updatedAt = at;
  if (note !== undefined) alarm.note = note;
  alarm.changes.push({ level: alarm.level, state: 'acknowledged', at, change: 'acknowledged' });
  state.escalationDueAt = null;
  const effects: PresenceEffect[] = [];
  announce(state, 'acknowledged', effects);
  return effects;
}

/** A manual clear: nothing is raised again until the device's next disconnect. */
export function clearByOperator(state: PresenceState, note: string | undefined, now: number): PresenceEffect[] {
  if (clearRefusal(state) !== null) return [];
  const effects: PresenceEffect[] = [];
  clearAlarm(state, 'operator', now, effects, note);
  state.offlineAlarmDueAt = null;
  state.recentDisconnects = [];
  return effects;
}

/** A new policy (provisioning changed it, or the device was deprovisioned). */
export function updatePolicy(state: PresenceState, policy: PresencePolicy, now: number): PresenceEffect[] {
  state.policy = policy;
  const effects: PresenceEffect[] = [];
  if (!policy.monitored) {
    clearAlarm(state, 'deprovisioned', now, effects);
    state.offlineAlarmDueAt = null;
    return effects;
  }
  if (state.offlineAlarmDueAt !== null && state.offlineSince !== null) {
    state.offlineAlarmDueAt = Math.min(state.offlineSince, now) + policy.graceMs;
  }
  if (state.alarm?.state === 'active' && state.escalationDueAt !== null) {
    const next = escalationTime(state, state.alarm.level);
    state.escalationDueAt = next === null ? null : Math.max(next, now);
  }
  return effects;
}

export interface AlarmView {
  alarmId: string;
  kind: AlarmKind;
  level: number;
  state: Alarm['state'];
  raisedAt: string;
  clearedBy?: AlarmClearedBy;
}

export interface PresenceView {
  clientId: string;
  presence: Presence;
  monitored: boolean;
  connectedAt?: string;
  disconnectedAt?: string;
  reason?: string;
  offlineSince?: string;
  alarm: AlarmView | null;
  /** When the workflow acts next by itself (raise, escalate, clear a flapping alarm); absent when nothing is pending. */
  nextTimerAt?: string;
  policy: { graceMs: number; escalationMs: number[]; flapThreshold: number; flapWindowMs: number; desiredSubscriptions: number };
  counters: PresenceCounters;
}

export function alarmView(state: PresenceState | null): AlarmView | null {
  const alarm = state?.alarm;
  if (!alarm) return null;
  return {
    alarmId: alarm.alarmId,
    kind: alarm.kind,
    level: alarm.level,
    state: alarm.state,
    raisedAt: alarm.raisedAt,
    ...(alarm.clearedBy ? { clearedBy: alarm.clearedBy } : {}),
  };
}

export function presenceView(state: PresenceState): PresenceView {
  const session = state.session;
  return {
    clientId: state.clientId,
    presence: state.presence,
    monitored: state.policy.monitored,
    ...(session ? { connectedAt: iso(session.connectedAt) } : {}),
    ...(session?.endedAt !== undefined ? { disconnectedAt: iso(session.endedAt) } : {}),
    ...(session?.reason !== undefined ? { reason: session.reason } : {}),
    ...(state.offlineSince !== null ? { offlineSince: iso(state.offlineSince) } : {}),
    alarm: alarmView(state),
    ...(nextDeadline(state) !== null ? { nextTimerAt: iso(nextDeadline(state) as number) } : {}),
    policy: {
      graceMs: state.policy.graceMs,
      escalationMs: [...state.policy.escalationMs],
      flapThreshold: state.policy.flapThreshold,
      flapWindowMs: state.policy.flapWindowMs,
      desiredSubscriptions: state.policy.desiredSubscriptions,
    },
    counters: { ...state.counters },
  };
}

/** The level the AlarmLevel search attribute shows: the open alarm's level, else 0. */
export function openAlarmLevel(state: PresenceState): number {
  return isOpen(state.alarm) ? state.alarm.level : 0;
}
