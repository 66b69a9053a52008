/**
 * A target's job execution and the rules that move it (docs/jobs.md), as AWS IoT Jobs names the
 * states (https://docs.aws.amazon.com/iot/latest/developerguide/iot-jobs-lifecycle.html). Pure and
 * workflow-safe: the store applies device reports with it, tests check it without a server.
 *
 * Device reports arrive through EMQX's rule engine at least once and in any order, so applying one
 * must be idempotent and order-proof: nothing moves a final state back to IN_PROGRESS, a duplicate
 * changes nothing, of two IN_PROGRESS reports the later one (by EMQX's receive time) stands, and of
 * two verdicts the earlier one.
 */

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
}

export type ApplyOutcome =
  /** The report moved the execution (or changed its progress). */
  | 'applied'
  /** The same message again, or an IN_PROGRESS that says nothing new. */
  | 'duplicate'
  /** The execution already ended (and the report is no earlier verdict of the device). */
  | 'final'
  /** An IN_PROGRESS older than the one the execution holds. */
  | 'stale';

export function newJobExecution(jobId: string, clientId: string, queuedAt?: number): JobExecution {
  return { jobId, clientId, status: 'QUEUED', updates: 0, ...(queuedAt !== undefined ? { queuedAt } : {}) };
}

/** The execution after one report, and why. `next` is `current` itself unless the outcome is `applied`. */
export function applyJobReport(current: JobExecution, report: JobStatusReport): { next: JobExecution; outcome: ApplyOutcome } {
  if (current.messageId === report.messageId) return { next: current, outcome: 'duplicate' };
  if (isFinalJobStatus(current.status) && !(isReportedFinal(current) && isFinalJobStatus(report.status) && report.at < (current.reportedAt ?? 0))) {
    return { next: current, outcome: 'final' };
  }
  if (report.status === 'IN_PROGRESS' && current.status === 'IN_PROGRESS') {
    if (!isNewer(report, current)) return { next: current, outcome: 'stale' };
    // The device said the same again (a repeat, not EMQX's redelivery): nothing to record.
    if ((report.progress ?? current.progress) === current.progress && (report.details ?? current.details) === current.details) return { next: current, outcome: 'duplicate' };
  }
  const next: JobExecution = {
    jobId: current.jobId,
    clientId: current.clientId,
    status: report.status,
    ...(report.status === 'SUCCEEDED' ? { progress: 100 } : report.progress !== undefined ? { progress: report.progress } : current.progress !== undefined ? { progress: current.progress } : {}),
    ...(report.details !== undefined ? { details: report.details } : current.details !== undefined ? { details: current.details } : {}),
    reportedAt: report.at,
    messageId: report.messageId,
    updates: current.updates + 1,
    ...(current.queuedAt !== undefined ? { queuedAt: current.queuedAt } : {}),
  };
  return { next, outcome: 'applied' };
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

/** The outcome of ending an execution from outside (a deadline, a cancel): only an open one ends. */
export function endJobExecution(current: JobExecution, status: 'TIMED_OUT' | 'CANCELED'): { next: JobExecution; outcome: ApplyOutcome } {
  if (isFinalJobStatus(current.status)) return { next: current, outcome: 'final' };
  return { next: { ...current, status, updates: current.updates + 1 }, outcome: 'applied' };
}

export type JobStatusCounts = Record<JobExecutionStatus, number>;

export function emptyJobStatusCounts(): JobStatusCounts {
  return { QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: 0, FAILED: 0, REJECTED: 0, TIMED_OUT: 0, CANCELED: 0 };
}
