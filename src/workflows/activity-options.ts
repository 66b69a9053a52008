import type { ActivityOptions } from '@temporalio/workflow';

/**
 * The activity options workflows choose from, named for the kind of step. Temporal retries a failed
 * activity by its retry policy (https://docs.temporal.io/encyclopedia/retry-policies); an activity
 * that must not be retried throws a non-retryable failure (src/activities/failures.ts), whatever the
 * preset says.
 */

/** One EMQX or MongoDB request: quick retries for a blip or a restart, then the step fails for good. */
export const standard = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 ms', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 10 },
} satisfies ActivityOptions;

/** A MongoDB write that must land (a lost record is worse than a late one): retried without end. */
export const untilDone = {
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
} satisfies ActivityOptions;

/** Undoing or settling after a failure: keeps trying for several minutes before it gives up. */
export const compensating = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
} satisfies ActivityOptions;

/** A step over many devices (a batch, a listing): minutes long, heartbeating, retried without end. */
export const longRunning = {
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: untilDone.retry,
} satisfies ActivityOptions;

/** A webhook to an operator's system: several minutes of retries, then the step is given up. */
export const notification = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 10 },
} satisfies ActivityOptions;

/** `preset` with at most `maximumAttempts` tries. */
export function withAttempts<T extends ActivityOptions & { retry: object }>(preset: T, maximumAttempts: number): T {
  return { ...preset, retry: { ...preset.retry, maximumAttempts } };
}
