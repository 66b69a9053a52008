import type { RetryRule, TargetPolicy } from './schemas/campaign';
import { isFinal, type TargetStatus } from './campaign';

/**
 * What happens to one target after each publish attempt: the retry criteria per failure type,
 * waiting for offline devices, the in-progress timeout, and how open targets end when the campaign
 * is cancelled, aborted or reaches its deadline. Pure functions of (state, outcome, policy, now).
 */

export interface TargetState {
  status: TargetStatus;
  attempts: number;
  /** Open targets: when the next attempt is due (epoch ms). */
  nextAt?: number;
  firstAt?: number;
  finishedAt?: number;
  messageId?: string;
  /** Delivered targets: how the message reached the device (see DeviceDelivery). */
  delivery?: DeviceDelivery;
  lastError?: string;
  /** The failure type of the last unsuccessful attempt. */
  lastFailure?: 'no_subscriber' | 'transient';
  noSubscriberCount?: number;
  transientCount?: number;
  /** Quick retries left after a reconnect signal. */
  wakeLeft?: number;
}

/**
 * How a delivered message reached its target device: `connected` = sent to the device's live
 * connection; `queued` = put in the device's offline persistent session, which EMQX delivers when
 * the device resumes it (docs/campaign-delivery.md).
 */
export type DeviceDelivery = 'connected' | 'queued';

/** The target device's session as EMQX lists it: connected, offline (persistent session kept), or none (absent). */
export type DeviceSession = 'connected' | 'offline';

/** What one publish attempt produced. */
export type AttemptOutcome =
  | { kind: 'delivered'; messageId?: string; delivery?: DeviceDelivery }
  | { kind: 'no_subscriber' }
  | { kind: 'transient'; error: string }
  /** The request was sent and its answer lost: EMQX may have published the message. */
  | { kind: 'unknown'; error: string }
  | { kind: 'rejected'; error: string };

export const NEVER_ATTEMPTED: Readonly<TargetState> = Object.freeze({ status: 'pending', attempts: 0 });

/** How a target given up after an unknown outcome is recorded (`retry.unknownOutcome: give-up`). */
export const UNKNOWN_OUTCOME_ERROR = 'outcome unknown, not sent again to avoid a duplicate (EMQX may have published it)';

export const NO_SUBSCRIBER_ERROR = 'no matching subscribers (device offline or not subscribed)';

export function backoffMs(rule: RetryRule, retryNumber: number): number {
  return Math.min(rule.maximumBackoffMs, rule.backoffMs * rule.backoffCoefficient ** Math.max(0, retryNumber - 1));
}

function finish(state: TargetState, status: TargetStatus, now: number, lastError?: string): TargetState {
  const { nextAt: _next, wakeLeft: _wake, ...rest } = state;
  return { ...rest, status, finishedAt: now, ...(lastError !== undefined ? { lastError } : {}) };
}

/** A retry scheduled past the in-progress timeout ends the target as timed_out instead. */
function retryOrTimeOut(state: TargetState, nextAt: number, policy: TargetPolicy, now: number): TargetState {
  const firstAt = state.firstAt ?? now;
  if (policy.inProgressTimeoutMs !== undefined && nextAt > firstAt + policy.inProgressTimeoutMs) {
    return finish(state, 'timed_out', now, `still failing ${Math.round(policy.inProgressTimeoutMs / 1000)}s after the first attempt: ${state.lastError ?? ''}`.trim());
  }
  return { ...state, status: 'retrying', nextAt };
}

function afterNoSubscriber(state: TargetState, policy: TargetPolicy, now: number): TargetState {
  const count = (state.noSubscriberCount ?? 0) + 1;
  const next: TargetState = { ...state, noSubscriberCount: count, lastFailure: 'no_subscriber', lastError: NO_SUBSCRIBER_ERROR };
  if (state.wakeLeft !== undefined && state.wakeLeft > 0) {
    const tried = policy.offline.wakeRetries - state.wakeLeft;
    return { ...next, status: 'waiting', wakeLeft: state.wakeLeft - 1, nextAt: now + policy.offline.wakeBackoffMs * 2 ** tried };
  }
  const { wakeLeft: _wake, ...settled } = next;
  if (count <= policy.retry.noSubscriber.retries) return retryOrTimeOut(settled, now + backoffMs(policy.retry.noSubscriber, count), policy, now);
  if (policy.offline.wait) return { ...settled, status: 'waiting', nextAt: now + policy.offline.recheckIntervalMs };
  return finish(settled, 'offline', now);
}

function afterTransient(state: TargetState, error: string, policy: TargetPolicy, now: number): TargetState {
  const count = (state.transientCount ?? 0) + 1;
  const next: TargetState = { ...state, transientCount: count, lastFailure: 'transient', lastError: error };
  if (count > policy.retry.transient.retries) return finish(next, 'failed', now);
  return retryOrTimeOut(next, now + backoffMs(policy.retry.transient, count), policy, now);
}

/** The state after one attempt with this outcome. */
export function applyOutcome(state: TargetState, outcome: AttemptOutcome, policy: TargetPolicy, now: number): TargetState {
  if (outcome.kind === 'delivered') {
    // The common case, built directly (no copies): what is left of an open state once delivered.
    const done: TargetState = { status: 'delivered', attempts: state.attempts + 1, firstAt: state.firstAt ?? now, finishedAt: now };
    if (state.noSubscriberCount !== undefined) done.noSubscriberCount = state.noSubscriberCount;
    if (state.transientCount !== undefined) done.transientCount = state.transientCount;
    if (outcome.messageId) done.messageId = outcome.messageId;
    if (outcome.delivery) done.delivery = outcome.delivery;
    return done;
  }
  const attempted: TargetState = { ...state, attempts: state.attempts + 1, firstAt: state.firstAt ?? now };
  switch (outcome.kind) {
    case 'no_subscriber':
      return afterNoSubscriber(attempted, policy, now);
    case 'transient':
      return afterTransient(attempted, outcome.error, policy, now);
    case 'unknown':
      // A stored policy from before the option existed has no value: the duplicate-free default.
      if (policy.retry.unknownOutcome === 'retry') return afterTransient(attempted, outcome.error, policy, now);
      return finish(attempted, 'failed', now, `${UNKNOWN_OUTCOME_ERROR}: ${outcome.error}`);
    case 'rejected':
      return finish(attempted, 'failed', now, outcome.error);
  }
}

/**
 * Whether a message EMQX accepted reached the target device itself. EMQX answers a publish with
 * success when any subscriber matches (a `#` monitoring client, a data pipeline), so the answer
 * alone says nothing about the device. The device's session, read just before and just after the
 * publish, does: with a session both times the device (connected, or offline with a persistent
 * session that queues the message) subscribed as routed; without one at either read, the message
 * reached other subscribers only, and the target is treated as not reached (no subscriber).
 */
export function confirmAtDevice(outcome: AttemptOutcome, before: DeviceSession | undefined, after: DeviceSession | undefined): AttemptOutcome {
  if (outcome.kind !== 'delivered') return outcome;
  if (before === undefined || after === undefined) return { kind: 'no_subscriber' };
  return { ...outcome, delivery: before === 'connected' && after === 'connected' ? 'connected' : 'queued' };
}

/** A reconnect signal: a waiting (or no-subscriber retrying) target is tried again now, a few times. */
export function wake(state: TargetState, policy: TargetPolicy, now: number): TargetState {
  if (isFinal(state.status) || state.lastFailure !== 'no_subscriber') return state;
  return { ...state, status: 'waiting', nextAt: now, wakeLeft: policy.offline.wakeRetries };
}

/**
 * A device found connected just after its target began waiting: one more try now. Without the
 * reconnect's quick retries: a device connected without the campaign's subscription would spend
 * them for nothing, and one whose subscriptions are still being re-applied is woken by its own
 * reconnect once they are live.
 */
export function retryNow(state: TargetState, now: number): TargetState {
  if (isFinal(state.status) || state.lastFailure !== 'no_subscriber') return state;
  return { ...state, nextAt: now };
}

/** How an open target ends when the campaign's deadline passes. */
export function expire(state: TargetState, now: number): TargetState {
  if (isFinal(state.status)) return state;
  if (state.attempts === 0) return finish(state, 'cancelled', now, 'the campaign deadline passed before the target was tried');
  if (state.lastFailure === 'no_subscriber') return finish(state, 'offline', now);
  return finish(state, 'timed_out', now, `the campaign deadline passed while retrying: ${state.lastError ?? ''}`.trim());
}

/** How an open target ends when the campaign is cancelled or aborted. */
export function cancel(state: TargetState, reason: string, now: number): TargetState {
  if (isFinal(state.status)) return state;
  return finish(state, 'cancelled', now, reason);
}

export function isDue(state: TargetState, now: number): boolean {
  return !isFinal(state.status) && (state.nextAt ?? 0) <= now;
}
