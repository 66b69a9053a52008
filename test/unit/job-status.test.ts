import { describe, expect, it } from 'vitest';
import { applyJobReport, endJobExecution, newJobExecution, type JobExecution, type JobStatusReport } from '../../src/domain/job-status';

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
    const done = applyAll([report('SUCCEEDED', 1)]);
    expect(endJobExecution(done, 'CANCELED')).toEqual({ next: done, outcome: 'final' });
    const timedOut = endJobExecution(queued, 'TIMED_OUT').next;
    expect(applyJobReport(timedOut, report('SUCCEEDED', 2)).outcome).toBe('final');
  });
});
