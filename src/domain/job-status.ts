/**
 * A target's job execution and the rules that move it (docs/jobs.md), as AWS IoT Jobs names the
 * states (https://docs.aws.amazon.com/iot/latest/developerguide/iot-jobs-lifecycle.html). Pure and
 * workflow-safe: the store applies device reports with it, tests check it without a server.
 *
 * Device reports arrive through EMQX's rule engine at least once and in any order, so applying one
 * must be idempotent and order-proof: nothing moves a final state back to IN_PROGRESS, a duplicate
 * changes nothing, of two IN_PROGRESS reports the later one (by EMQX's receive time) stands, and of
 * two verdicts the earlier one.
 *
 * Retries (AWS IoT Jobs' `jobExecutionsRetryConfig`): a FAILED or TIMED_OUT execution with retries
 * of its type left goes back to QUEUED as attempt n+1 and its job is published again, same job id.
 * Which attempt does a report answer? The device does not say, so the receive time does: an
 * attempt starts (`attemptStartedAt`) when its republishing begins, just before the publish, and
 * a report EMQX received (`publish_received_at`) before that answers an earlier attempt and moves
 * nothing (outcome `earlier-attempt`), however late the adapter applies it. Until it is published
 * the attempt starts at its due time (`retryAt`), and republishing resets whatever a report
 * received after that moved, since the device cannot have answered an attempt not yet sent.
 * The rule needs EMQX's clock and the worker's to agree to better than the time from a publish to
 * the device's first answer; a device answering an earlier attempt after the next one was sent
 * (a TIMED_OUT device waking up) is indistinguishable from an answer to the new one.
 */
import type { RetryRule } from './schemas/campaign';
import { backoffMs } from './campaign-target-state';

export const JOB_EXECUTION_STATUSES = ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT', 'CANCELED'] as const;
export type JobExecutionStatus = (typeof JOB_EXECUTION_STATUSES)[number];

/** What a device may report. */
export const REPORTED_JOB_STATUSES = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'] as const;
export type ReportedJobStatus = (typeof REPORTED_JOB_STATUSES)[number];

const FINAL: ReadonlySet<JobExecutionStatus> = new Set(['SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT', 'CANCELED']);

export function isFinalJobStatus(status: JobExecutionStatus): boolean {
  return FINAL.has(status);
}

/** One validated status message of a device. */
export interface JobStatusReport {
  status: ReportedJobStatus;
  /** 0-100. */
  progress?: number;
  /** The device's details as JSON text (kept as text: MongoDB keys may not hold `.` or a leading `$`). */
  details?: string;
  /** EMQX's receive time of the message (epoch ms): the order of a device's reports. */
  at: number;
  /** EMQX's message id: the same message delivered twice has the same id. */
  messageId: string;
}

export interface JobExecution {
  jobId: string;
  clientId: string;
  status: JobExecutionStatus;
  progress?: number;
  details?: string;
  /** Receive time of the report that set the current state (epoch ms). */
  reportedAt?: number;
  /** Message id of that report. */
  messageId?: string;
  /** Reports applied so far. */
  updates: number;
  /** When the job was delivered to the target (epoch ms): a campaign's reply timeout runs from here. */
  queuedAt?: number;
  /** The target's chunk in its campaign (to find the target again when its job is published again). */
  chunk?: number;
  /** The attempt (absent: the first). */
  attempt?: number;
  /** Retries so far, all types, and per type (absent: none). */
  retries?: number;
  failedRetries?: number;
  timedOutRetries?: number;
  /** Reports EMQX received before this time answer an earlier attempt (see the module comment). */
  attemptStartedAt?: number;
  /** Set while a retry is due and not yet delivered: when it is due (epoch ms). */
  retryAt?: number;
  /** What ended the previous attempt. */
  previousStatus?: 'FAILED' | 'TIMED_OUT';
  /** Ended (TIMED_OUT, CANCELED) from outside while IN_PROGRESS: a rollback goes to it. */
  wasInProgress?: boolean;
  /**
   * TIMED_OUT: the moment the execution ran out of time (its reply deadline, or the campaign's).
   * A verdict EMQX received before it still stands when it is applied later (see applyJobReport).
   */
  timedOutAt?: number;
}

/** Retries per failure type of a job's executions, as AWS IoT Jobs' retry criteria (0-10 each). */
export interface JobRetrySettings {
  failed?: RetryRule;
  timedOut?: RetryRule;
}

export type ApplyOutcome =
  /** The report moved the execution (or changed its progress). */
  | 'applied'
  /** The same message again, or an IN_PROGRESS that says nothing new. */
  | 'duplicate'
  /** The execution already ended (and the report is no earlier verdict of the device). */
  | 'final'
  /** An IN_PROGRESS older than the one the execution holds. */
  | 'stale'
  /** A report EMQX received before the execution's current attempt started. */
  | 'earlier-attempt';

export function newJobExecution(jobId: string, clientId: string, queuedAt?: number, chunk?: number): JobExecution {
  return { jobId, clientId, status: 'QUEUED', updates: 0, ...(queuedAt !== undefined ? { queuedAt } : {}), ...(chunk !== undefined ? { chunk } : {}) };
}

/** The execution after one report, and why. `next` is `current` itself unless the outcome is `applied`. */
export function applyJobReport(current: JobExecution, report: JobStatusReport): { next: JobExecution; outcome: ApplyOutcome } {
  if (current.messageId === report.messageId) return { next: current, outcome: 'duplicate' };
  if (current.attemptStartedAt !== undefined && report.at < current.attemptStartedAt) return { next: current, outcome: 'earlier-attempt' };
  if (answeredInTime(current, report)) return { next: reported(current, report), outcome: 'applied' };
  if (isFinalJobStatus(current.status) && !(isReportedFinal(current) && isFinalJobStatus(report.status) && report.at < (current.reportedAt ?? 0))) {
    return { next: current, outcome: 'final' };
  }
  if (report.status === 'IN_PROGRESS' && current.status === 'IN_PROGRESS') {
    if (!isNewer(report, current)) return { next: current, outcome: 'stale' };
    // The device said the same again (a repeat, not EMQX's redelivery): nothing to record.
    if ((report.progress ?? current.progress) === current.progress && (report.details ?? current.details) === current.details) return { next: current, outcome: 'duplicate' };
  }
  return { next: reported(current, report), outcome: 'applied' };
}

/**
 * A verdict (SUCCEEDED, FAILED, REJECTED) EMQX received before the execution timed out, applied
 * after the timeout was: the device answered in time, and only the report's way through the
 * adapter was late (a backlog of replies, an adapter restart), so its verdict replaces TIMED_OUT.
 * Not once a retry of the timed-out attempt is scheduled: that retry is the execution now.
 */
function answeredInTime(current: JobExecution, report: JobStatusReport): boolean {
  return (
    current.status === 'TIMED_OUT' &&
    current.timedOutAt !== undefined &&
    current.retryAt === undefined &&
    report.status !== 'IN_PROGRESS' &&
    report.at <= current.timedOutAt
  );
}

/** The execution as `report` leaves it. */
function reported(current: JobExecution, report: JobStatusReport): JobExecution {
  return {
    jobId: current.jobId,
    clientId: current.clientId,
    status: report.status,
    ...(report.status === 'SUCCEEDED' ? { progress: 100 } : report.progress !== undefined ? { progress: report.progress } : current.progress !== undefined ? { progress: current.progress } : {}),
    ...(report.details !== undefined ? { details: report.details } : current.details !== undefined ? { details: current.details } : {}),
    reportedAt: report.at,
    messageId: report.messageId,
    updates: current.updates + 1,
    ...bookkeeping(current),
  };
}

/** What an execution keeps whatever a report says: delivery, chunk and attempt. */
function bookkeeping(current: JobExecution): Partial<JobExecution> {
  const out: Partial<JobExecution> = {};
  for (const key of ['queuedAt', 'chunk', 'attempt', 'retries', 'failedRetries', 'timedOutRetries', 'attemptStartedAt', 'retryAt', 'previousStatus'] as const) {
    if (current[key] !== undefined) (out as Record<string, unknown>)[key] = current[key];
  }
  return out;
}

/**
 * A verdict the device itself gave. Should a device give two, the one EMQX received first is its
 * verdict, whichever the adapter applies first (EMQX's HTTP action sends requests side by side).
 */
function isReportedFinal(execution: JobExecution): boolean {
  return (execution.status === 'SUCCEEDED' || execution.status === 'FAILED' || execution.status === 'REJECTED') && execution.messageId !== undefined;
}

/** Later by receive time; at the same millisecond, further along. */
function isNewer(report: JobStatusReport, current: JobExecution): boolean {
  const at = current.reportedAt ?? -1;
  if (report.at !== at) return report.at > at;
  return (report.progress ?? -1) > (current.progress ?? -1);
}

/**
 * The outcome of ending an execution from outside (a deadline, a cancel): only an open one ends.
 * `at`: when a TIMED_OUT execution ran out of time (its reply deadline); verdicts EMQX received
 * until then still count when they arrive (applyJobReport).
 */
export function endJobExecution(current: JobExecution, status: 'TIMED_OUT' | 'CANCELED', at?: number): { next: JobExecution; outcome: ApplyOutcome } {
  if (isFinalJobStatus(current.status)) return { next: current, outcome: 'final' };
  const { retryAt: _due, ...rest } = current;
  return {
    next: { ...rest, status, updates: current.updates + 1, ...(current.status === 'IN_PROGRESS' ? { wasInProgress: true } : {}), ...(status === 'TIMED_OUT' && at !== undefined ? { timedOutAt: at } : {}) },
    outcome: 'applied',
  };
}

/** The retry rule for an execution's state, and how many retries of that type it had. */
function retryOf(current: JobExecution, settings: JobRetrySettings): { rule: RetryRule; done: number; type: 'FAILED' | 'TIMED_OUT' } | null {
  if (current.status === 'FAILED' && settings.failed) return { rule: settings.failed, done: current.failedRetries ?? 0, type: 'FAILED' };
  if (current.status === 'TIMED_OUT' && settings.timedOut) return { rule: settings.timedOut, done: current.timedOutRetries ?? 0, type: 'TIMED_OUT' };
  return null;
}

/** Whether a FAILED or TIMED_OUT execution will be tried again: it does not count as final yet. */
export function hasRetryLeft(current: JobExecution, settings: JobRetrySettings): boolean {
  const retry = retryOf(current, settings);
  return retry !== null && retry.done < retry.rule.retries && current.retryAt === undefined;
}

/**
 * A FAILED or TIMED_OUT execution with retries of its type left goes back to QUEUED as the next
 * attempt, due after the rule's backoff; the report fields of the attempt that ended are dropped.
 * Anything else stays as it is (`final`).
 */
export function scheduleJobRetry(current: JobExecution, settings: JobRetrySettings, now: number): { next: JobExecution; outcome: ApplyOutcome } {
  const retry = retryOf(current, settings);
  if (!retry || !hasRetryLeft(current, settings)) return { next: current, outcome: 'final' };
  const retryAt = now + backoffMs(retry.rule, retry.done + 1);
  // No delivery time until it is published: the reply timeout does not run while it waits for its turn.
  const { queuedAt: _queued, progress: _progress, details: _details, reportedAt: _reportedAt, messageId: _messageId, wasInProgress: _was, ...rest } = current;
  const next: JobExecution = {
    ...rest,
    status: 'QUEUED',
    updates: current.updates + 1,
    attempt: (current.attempt ?? 1) + 1,
    retries: (current.retries ?? 0) + 1,
    ...(retry.type === 'FAILED' ? { failedRetries: retry.done + 1 } : { timedOutRetries: retry.done + 1 }),
    previousStatus: retry.type,
    attemptStartedAt: retryAt,
    retryAt,
  };
  return { next, outcome: 'applied' };
}

/**
 * Attempt `attempt` is about to be published at `at`: reports received from here on answer it, and
 * its reply timeout runs from here (from the first try, when EMQX did not take an earlier one).
 * Whatever a report received since the due time moved is undone: the device had not been sent this
 * attempt yet. Only for a due attempt (`retryAt` set), which stops being due.
 *
 * The attempt is marked sent before the publish, not after: once it is out, the device's answers
 * race with any write of ours, and FerretDB 1.x may lose one of two concurrent compare-and-set
 * writes (src/store/job-executions.ts).
 */
export function beginJobAttempt(current: JobExecution, attempt: number, at: number): { next: JobExecution; outcome: ApplyOutcome } {
  if (current.retryAt === undefined || (current.attempt ?? 1) !== attempt) return { next: current, outcome: 'final' };
  const { progress: _progress, details: _details, reportedAt: _reportedAt, messageId: _messageId, retryAt: _due, ...rest } = current;
  return { next: { ...rest, status: 'QUEUED', attemptStartedAt: at, queuedAt: current.queuedAt ?? at, updates: current.updates + 1 }, outcome: 'applied' };
}

/** EMQX did not take attempt `attempt` (no subscriber, an error): it is due again at `now`, unless the device answered it meanwhile. */
export function jobAttemptNotDelivered(current: JobExecution, attempt: number, now: number): { next: JobExecution; outcome: ApplyOutcome } {
  if (current.status !== 'QUEUED' || current.retryAt !== undefined || (current.attempt ?? 1) !== attempt) return { next: current, outcome: 'final' };
  return { next: { ...current, retryAt: now, updates: current.updates + 1 }, outcome: 'applied' };
}

export type JobStatusCounts = Record<JobExecutionStatus, number>;

export function emptyJobStatusCounts(): JobStatusCounts {
  return { QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: 0, FAILED: 0, REJECTED: 0, TIMED_OUT: 0, CANCELED: 0 };
}
