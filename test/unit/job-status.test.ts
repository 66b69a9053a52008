import { describe, expect, it } from 'vitest';
import {
  applyJobReport,
  beginJobAttempt,
  endJobExecution,
  hasRetryLeft,
  jobAttemptNotDelivered,
  newJobExecution,
  scheduleJobRetry,
  type JobExecution,
  type JobRetrySettings,
  type JobStatusReport,
} from '../../src/domain/job-status';

/** The per-target rules of src/domain/job-status.ts: reports arrive at least once and in any order. */

let nextId = 0;
const report = (status: JobStatusReport['status'], at: number, extra: Partial<JobStatusReport> = {}): JobStatusReport => ({ status, at, messageId: `m${++nextId}`, ...extra });

function applyAll(reports: JobStatusReport[]): JobExecution {
  return reports.reduce((execution, r) => applyJobReport(execution, r).next, newJobExecution('job-1', 'dev-1'));
}

describe('job execution rules', () => {
  it('moves QUEUED through IN_PROGRESS to SUCCEEDED, counting updates; SUCCEEDED means 100%', () => {
    const execution = applyAll([report('IN_PROGRESS', 10, { progress: 20 }), report('IN_PROGRESS', 20, { progress: 60 }), report('SUCCEEDED', 30, { details: '{"v":2}' })]);
    expect(execution).toMatchObject({ status: 'SUCCEEDED', progress: 100, details: '{"v":2}', reportedAt: 30, updates: 3 });
  });

  it('never leaves a final state for IN_PROGRESS, nor for a later verdict', () => {
    const done = applyAll([report('FAILED', 50, { details: '{"e":1}' })]);
    for (const late of [report('IN_PROGRESS', 40, { progress: 90 }), report('IN_PROGRESS', 60, { progress: 90 }), report('SUCCEEDED', 70), report('REJECTED', 50)]) {
      expect(applyJobReport(done, late)).toEqual({ next: done, outcome: 'final' });
    }
  });

  it('of two verdicts, the one EMQX received first stands, whichever is applied first', () => {
    const succeeded = report('SUCCEEDED', 10);
    const failed = report('FAILED', 20);
    expect(applyAll([succeeded, failed]).status).toBe('SUCCEEDED');
    expect(applyAll([failed, succeeded]).status).toBe('SUCCEEDED');
  });

  it('the same message twice is a duplicate, whatever it says', () => {
    const first = report('IN_PROGRESS', 10, { progress: 20 });
    const once = applyAll([first]);
    expect(applyJobReport(once, first)).toEqual({ next: once, outcome: 'duplicate' });
    const final = applyAll([report('SUCCEEDED', 5, { messageId: 'same' })]);
    expect(applyJobReport(final, report('SUCCEEDED', 5, { messageId: 'same' })).outcome).toBe('duplicate');
  });

  it('of two IN_PROGRESS reports the later one stands, whichever arrives first', () => {
    const early = report('IN_PROGRESS', 10, { progress: 30 });
    const late = report('IN_PROGRESS', 20, { progress: 70 });
    const inOrder = applyAll([early, late]);
    const reordered = applyAll([late, early]);
    expect(inOrder).toMatchObject({ status: 'IN_PROGRESS', progress: 70, reportedAt: 20 });
    expect(reordered).toMatchObject({ status: 'IN_PROGRESS', progress: 70, reportedAt: 20, updates: 1 });
    expect(applyJobReport(reordered, early).outcome).toBe('stale');
  });

  it('at the same millisecond the one further along stands; a repeat that says nothing new is no update', () => {
    const a = applyAll([report('IN_PROGRESS', 10, { progress: 50 })]);
    expect(applyJobReport(a, report('IN_PROGRESS', 10, { progress: 40 })).outcome).toBe('stale');
    expect(applyJobReport(a, report('IN_PROGRESS', 10, { progress: 60 })).next.progress).toBe(60);
    expect(applyJobReport(a, report('IN_PROGRESS', 11, { progress: 50 })).outcome).toBe('duplicate');
    expect(applyJobReport(a, report('IN_PROGRESS', 11)).outcome).toBe('duplicate');
  });

  it('a final report wins over IN_PROGRESS even when EMQX received it earlier', () => {
    const running = applyAll([report('IN_PROGRESS', 100, { progress: 80 })]);
    expect(applyJobReport(running, report('FAILED', 90)).next).toMatchObject({ status: 'FAILED', progress: 80, updates: 2 });
  });

  it('every order of the same reports ends in the same state', () => {
    const reports = [report('IN_PROGRESS', 1, { progress: 10 }), report('IN_PROGRESS', 2, { progress: 50 }), report('SUCCEEDED', 3, { details: '{"ok":true}' })];
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    const finals = orders.map((order) => applyAll([...order, ...order].map((i) => reports[i] as JobStatusReport)));
    for (const final of finals) expect(final).toMatchObject({ status: 'SUCCEEDED', progress: 100, details: '{"ok":true}' });
  });

  it('a deadline or a cancel ends only an open execution', () => {
    const queued = newJobExecution('job-1', 'dev-1');
    expect(endJobExecution(queued, 'TIMED_OUT').next.status).toBe('TIMED_OUT');
    expect(endJobExecution(queued, 'CANCELED').next.wasInProgress).toBeUndefined();
    // One ended while the device was at it is marked so (a rollback goes to it).
    expect(endJobExecution(applyAll([report('IN_PROGRESS', 1)]), 'CANCELED').next).toMatchObject({ status: 'CANCELED', wasInProgress: true });
    const done = applyAll([report('SUCCEEDED', 1)]);
    expect(endJobExecution(done, 'CANCELED')).toEqual({ next: done, outcome: 'final' });
    const timedOut = endJobExecution(queued, 'TIMED_OUT').next;
    expect(applyJobReport(timedOut, report('SUCCEEDED', 2)).outcome).toBe('final');
  });

  it('a verdict EMQX received before the timeout replaces TIMED_OUT when it is applied late; a later one, IN_PROGRESS or a scheduled retry does not', () => {
    const started = applyAll([report('IN_PROGRESS', 100, { progress: 40 })]);
    const timedOut = endJobExecution(started, 'TIMED_OUT', 1_000).next;
    expect(timedOut).toMatchObject({ status: 'TIMED_OUT', timedOutAt: 1_000, wasInProgress: true });
    // Received at the deadline itself, applied after it: the device answered in time.
    const answered = applyJobReport(timedOut, report('SUCCEEDED', 1_000, { details: '{"v":2}' }));
    expect(answered.outcome).toBe('applied');
    expect(answered.next).toMatchObject({ status: 'SUCCEEDED', progress: 100, reportedAt: 1_000, details: '{"v":2}' });
    expect(answered.next.timedOutAt).toBeUndefined();
    expect(answered.next.wasInProgress).toBeUndefined();
    expect(applyJobReport(timedOut, report('FAILED', 999)).next.status).toBe('FAILED');
    // Received after the deadline: too late.
    expect(applyJobReport(timedOut, report('SUCCEEDED', 1_001)).outcome).toBe('final');
    // A progress report changes nothing once the time is up.
    expect(applyJobReport(timedOut, report('IN_PROGRESS', 900, { progress: 90 })).outcome).toBe('final');
    // A timeout without its moment (the campaign's deadline before this rule) stays as it is.
    expect(applyJobReport(endJobExecution(started, 'TIMED_OUT').next, report('SUCCEEDED', 1)).outcome).toBe('final');
    // Once its retry is scheduled, the retry is the execution: the answer was to an earlier attempt.
    const retrying = scheduleJobRetry(timedOut, { timedOut: { retries: 1, backoffMs: 1_000, backoffCoefficient: 1, maximumBackoffMs: 1_000 } }, 1_500).next;
    expect(applyJobReport(retrying, report('SUCCEEDED', 900)).outcome).toBe('earlier-attempt');
    // A cancel keeps no such moment.
    expect(applyJobReport(endJobExecution(started, 'CANCELED', 1_000).next, report('SUCCEEDED', 500)).outcome).toBe('final');
  });
});

describe('job execution retries', () => {
  const settings: JobRetrySettings = {
    failed: { retries: 2, backoffMs: 1_000, backoffCoefficient: 2, maximumBackoffMs: 1_500 },
    timedOut: { retries: 1, backoffMs: 0, backoffCoefficient: 2, maximumBackoffMs: 300_000 },
  };
  /** Schedules the next attempt and begins it at `publishAt`, as the poll activity does. */
  function retried(execution: JobExecution, now: number, publishAt: number): JobExecution {
    const scheduled = scheduleJobRetry(execution, settings, now);
    expect(scheduled.outcome).toBe('applied');
    return beginJobAttempt(scheduled.next, scheduled.next.attempt as number, publishAt).next;
  }

  it('sends a FAILED execution back to QUEUED as the next attempt, after the backoff, counting retries per type until they are used up', () => {
    const failed = applyAll([report('IN_PROGRESS', 10, { progress: 40 }), report('FAILED', 20, { details: '{"e":1}' })]);
    expect(hasRetryLeft(failed, settings)).toBe(true);
    const { next } = scheduleJobRetry(failed, settings, 100);
    expect(next).toMatchObject({ status: 'QUEUED', attempt: 2, retries: 1, failedRetries: 1, previousStatus: 'FAILED', retryAt: 1_100, attemptStartedAt: 1_100 });
    // Not published yet: no delivery time for the reply timeout to run from.
    expect(next.queuedAt).toBeUndefined();
    expect(next.progress).toBeUndefined();
    expect(next.details).toBeUndefined();
    // A scheduled retry is not scheduled twice.
    expect(scheduleJobRetry(next, settings, 200).outcome).toBe('final');

    const second = applyJobReport(retried(failed, 100, 1_200), report('FAILED', 1_300)).next;
    // Backoff doubles, capped at maximumBackoffMs.
    expect(scheduleJobRetry(second, settings, 2_000).next).toMatchObject({ attempt: 3, failedRetries: 2, retryAt: 3_500 });
    const third = applyJobReport(retried(second, 2_000, 3_600), report('FAILED', 3_700)).next;
    expect(hasRetryLeft(third, settings)).toBe(false);
    expect(scheduleJobRetry(third, settings, 4_000)).toEqual({ next: third, outcome: 'final' });
  });

  it('retries TIMED_OUT by its own count; SUCCEEDED, REJECTED and types without a rule are final', () => {
    const timedOut = endJobExecution(newJobExecution('job-1', 'dev-1', 0), 'TIMED_OUT').next;
    const again = retried(timedOut, 50, 50);
    expect(again.retryAt).toBeUndefined();
    expect(again).toMatchObject({ status: 'QUEUED', attempt: 2, timedOutRetries: 1, retries: 1, queuedAt: 50 });
    expect(hasRetryLeft(endJobExecution(again, 'TIMED_OUT').next, settings)).toBe(false);
    // Then FAILED still has its own two retries.
    expect(scheduleJobRetry(applyJobReport(again, report('FAILED', 60)).next, settings, 70).next).toMatchObject({ attempt: 3, failedRetries: 1, timedOutRetries: 1, retries: 2 });
    for (const status of ['SUCCEEDED', 'REJECTED'] as const) expect(scheduleJobRetry(applyAll([report(status, 5)]), settings, 10).outcome).toBe('final');
    expect(scheduleJobRetry(applyAll([report('FAILED', 5)]), { timedOut: settings.timedOut }, 10).outcome).toBe('final');
  });

  it('a report EMQX received before the new attempt started does not decide it, however late it is applied', () => {
    // Attempt 1: IN_PROGRESS at 10 and FAILED at 20; the adapter applies the FAILED first.
    const lateProgress = report('IN_PROGRESS', 10, { progress: 30 });
    const failed = applyAll([report('FAILED', 20)]);
    const attempt2 = retried(failed, 25, 1_000);
    expect(applyJobReport(attempt2, lateProgress)).toEqual({ next: attempt2, outcome: 'earlier-attempt' });
    // A duplicate of attempt 1's verdict too.
    expect(applyJobReport(attempt2, report('FAILED', 20)).outcome).toBe('earlier-attempt');
    // Attempt 2's own reports, duplicated and reordered, end in its verdict.
    const own = [report('IN_PROGRESS', 1_010, { progress: 50 }), report('SUCCEEDED', 1_020)];
    for (const order of [[0, 1, 0, 1], [1, 0, 1, 0]]) {
      const final = order.reduce((e, i) => applyJobReport(e, own[i] as JobStatusReport).next, attempt2);
      expect(final).toMatchObject({ status: 'SUCCEEDED', progress: 100, attempt: 2, retries: 1, reportedAt: 1_020 });
      expect(applyJobReport(final, lateProgress).outcome).toBe('earlier-attempt');
    }
  });

  it('a late report received after the retry was due but before it was published is undone when the attempt begins', () => {
    const scheduled = scheduleJobRetry(applyAll([report('FAILED', 20)]), settings, 100).next;
    // Due at 1,100, published at 1,500: a report received at 1,200 can only answer attempt 1.
    const moved = applyJobReport(scheduled, report('SUCCEEDED', 1_200)).next;
    expect(moved.status).toBe('SUCCEEDED');
    const begun = beginJobAttempt(moved, 2, 1_500).next;
    expect(begun).toMatchObject({ status: 'QUEUED', attempt: 2, attemptStartedAt: 1_500, queuedAt: 1_500 });
    expect(begun.reportedAt).toBeUndefined();
    expect(begun.retryAt).toBeUndefined();
    // Begun once only, and only the current attempt.
    expect(beginJobAttempt(begun, 2, 1_600).outcome).toBe('final');
    expect(beginJobAttempt(scheduled, 3, 1_600).outcome).toBe('final');
    // EMQX did not take it: due again, and begun again later, the reply timeout still running from the first try.
    const again = jobAttemptNotDelivered(begun, 2, 6_000).next;
    expect(again.retryAt).toBe(6_000);
    expect(beginJobAttempt(again, 2, 6_500).next).toMatchObject({ attemptStartedAt: 6_500, queuedAt: 1_500 });
    // Not for another attempt, nor once the device answered (an outcome EMQX did not tell).
    expect(jobAttemptNotDelivered(begun, 1, 6_000).outcome).toBe('final');
    expect(jobAttemptNotDelivered(applyJobReport(begun, report('IN_PROGRESS', 1_600)).next, 2, 6_000).outcome).toBe('final');
    // A cancel ends the scheduled retry; it is not begun afterwards.
    const canceled = endJobExecution(scheduled, 'CANCELED').next;
    expect(canceled.retryAt).toBeUndefined();
    expect(beginJobAttempt(canceled, 2, 1_500).outcome).toBe('final');
  });
});
