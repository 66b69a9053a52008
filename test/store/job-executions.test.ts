import { Collection } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { JobStatusReport } from '../../src/domain/job-status';
import { JobExecutionStore } from '../../src/store/job-executions';
import { WaitingCommands } from '../../src/store/waiting-commands';
import { freshDatabase } from '../harness';

/**
 * The store side of job replies on FerretDB (src/store/job-executions.ts): reports applied to
 * per-target records idempotently and in order, however they arrive, and counts read per job.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let store: JobExecutionStore;

beforeAll(async () => {
  database = await freshDatabase('jobexec');
  store = new JobExecutionStore(database.db);
  await store.ensureIndexes();
});

afterAll(async () => {
  await database?.close();
});

const report = (messageId: string, status: JobStatusReport['status'], at: number, progress?: number): JobStatusReport => ({
  messageId,
  status,
  at,
  ...(progress !== undefined ? { progress } : {}),
});

describe('job executions', () => {
  it('times out only the open executions delivered at or before the cut-off, a batch at a time; a report keeps the delivery time', async () => {
    await store.queue('job-t', ['early-1', 'early-2', 'early-3', 'answered'], 1_000);
    await store.queue('job-t', ['recent'], 5_000);
    expect(await store.apply('job-t', 'early-1', report('t1', 'IN_PROGRESS', 1_500, 10))).toMatchObject({ execution: { status: 'IN_PROGRESS', queuedAt: 1_000 } });
    await store.apply('job-t', 'answered', report('t2', 'SUCCEEDED', 1_600));
    // A batch of 2 of the 3 overdue ones (early-1 in progress, early-2, early-3), then the last.
    expect(await store.endOpen('job-t', 'TIMED_OUT', 2, { now: 3_000, timeoutMs: 1_000 })).toBe(2);
    expect(await store.endOpen('job-t', 'TIMED_OUT', 2, { now: 3_000, timeoutMs: 1_000 })).toBe(1);
    expect(await store.endOpen('job-t', 'TIMED_OUT', 2, { now: 3_000, timeoutMs: 1_000 })).toBe(0);
    expect(await store.counts('job-t')).toMatchObject({ QUEUED: 1, IN_PROGRESS: 0, SUCCEEDED: 1, TIMED_OUT: 3 });
    // Each timed out at its delivery + the timeout (2,000): a verdict EMQX received by then, applied
    // only now, still counts; one received after it does not.
    expect(await store.get('job-t', 'early-2')).toMatchObject({ status: 'TIMED_OUT', timedOutAt: 2_000 });
    expect(await store.apply('job-t', 'early-2', report('t3', 'SUCCEEDED', 1_900))).toMatchObject({ outcome: 'applied', execution: { status: 'SUCCEEDED' } });
    expect(await store.apply('job-t', 'early-3', report('t4', 'SUCCEEDED', 2_100))).toMatchObject({ outcome: 'final', execution: { status: 'TIMED_OUT' } });
    expect(await store.counts('job-t')).toMatchObject({ SUCCEEDED: 2, TIMED_OUT: 2 });
    // Without a cut-off (a cancel) every open one ends.
    expect(await store.endOpen('job-t', 'CANCELED', 10)).toBe(1);
    const found = await store.many('job-t', ['early-1', 'answered', 'recent', 'unknown']);
    expect(Object.fromEntries([...found].map(([id, e]) => [id, e.status]))).toEqual({ 'early-1': 'TIMED_OUT', answered: 'SUCCEEDED', recent: 'CANCELED' });
  });

  it('queues targets once; a report moves its target; the same report again changes nothing', async () => {
    await store.queue('job-a', ['d1', 'd2', 'd3']);
    await store.queue('job-a', ['d1']);
    expect(await store.apply('job-a', 'd1', report('m1', 'IN_PROGRESS', 100, 20))).toMatchObject({ outcome: 'applied', execution: { status: 'IN_PROGRESS', progress: 20, updates: 1 } });
    expect(await store.apply('job-a', 'd1', report('m1', 'IN_PROGRESS', 100, 20))).toMatchObject({ outcome: 'duplicate' });
    expect(await store.apply('job-a', 'd2', report('m2', 'SUCCEEDED', 110))).toMatchObject({ outcome: 'applied' });
    expect(await store.get('job-a', 'd1')).toMatchObject({ status: 'IN_PROGRESS', updates: 1 });
    expect(await store.counts('job-a')).toEqual({ QUEUED: 1, IN_PROGRESS: 1, SUCCEEDED: 1, FAILED: 0, REJECTED: 0, TIMED_OUT: 0, CANCELED: 0 });
  });

  it('a report for a target with no record yet creates it; a late IN_PROGRESS never overwrites SUCCEEDED', async () => {
    expect(await store.apply('job-b', 'd1', report('m3', 'SUCCEEDED', 200))).toMatchObject({ outcome: 'applied' });
    expect(await store.apply('job-b', 'd1', report('m4', 'IN_PROGRESS', 150, 50))).toMatchObject({ outcome: 'final' });
    expect(await store.end('job-b', 'd1', 'TIMED_OUT')).toMatchObject({ outcome: 'final' });
    expect(await store.get('job-b', 'd1')).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: 'm3' });
  });

  it('reports of one target applied side by side (as EMQX sends them) all count, and the latest stands', async () => {
    const reports = Array.from({ length: 12 }, (_, i) => report(`p${i}`, 'IN_PROGRESS', 1_000 + i, i * 5));
    const done = report('verdict', 'SUCCEEDED', 1_005);
    await Promise.all([...reports, done].reverse().map((r) => store.apply('job-c', 'd1', r)));
    expect(await store.get('job-c', 'd1')).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: 'verdict' });
    await Promise.all(reports.map((r) => store.apply('job-c', 'd2', r)));
    expect(await store.get('job-c', 'd2')).toMatchObject({ status: 'IN_PROGRESS', progress: 55, reportedAt: 1_011, messageId: 'p11', updates: 12 });
    expect(await store.apply('job-c', 'd2', report('done', 'FAILED', 2_000))).toMatchObject({ outcome: 'applied', execution: { status: 'FAILED', progress: 55 } });
  });

  it('schedules retries of FAILED and TIMED_OUT executions with retries of their type left, finds the due ones, counts retries, and lists the rollback targets', async () => {
    const rule = { retries: 1, backoffMs: 1_000, backoffCoefficient: 2, maximumBackoffMs: 300_000 };
    const settings = { failed: rule, timedOut: rule };
    await store.queue('job-r', ['fails', 'silent', 'ok', 'busy'], 1_000, 3);
    await store.apply('job-r', 'fails', report('r1', 'FAILED', 1_100));
    await store.apply('job-r', 'ok', report('r2', 'SUCCEEDED', 1_100));
    await store.apply('job-r', 'busy', report('r3', 'IN_PROGRESS', 1_100, 40));
    await store.end('job-r', 'silent', 'TIMED_OUT');
    expect(await store.countRetryable('job-r', settings)).toEqual({ failed: 1, timedOut: 1 });
    expect(await store.countRetryable('job-r', { failed: rule })).toEqual({ failed: 1, timedOut: 0 });

    // A batch of 1, then the other; none is left after.
    expect(await store.scheduleRetries('job-r', settings, 1, 2_000)).toBe(1);
    expect(await store.scheduleRetries('job-r', settings, 1, 2_000)).toBe(1);
    expect(await store.scheduleRetries('job-r', settings, 1, 2_000)).toBe(0);
    expect(await store.countRetryable('job-r', settings)).toEqual({ failed: 0, timedOut: 0 });
    expect((await store.counts('job-r')).QUEUED).toBe(2);
    expect(await store.dueRetries('job-r', 10, 2_999)).toEqual([]);
    const due = await store.dueRetries('job-r', 10, 3_000);
    expect(due.map((e) => [e.clientId, e.attempt, e.chunk]).sort()).toEqual([
      ['fails', 2, 3],
      ['silent', 2, 3],
    ]);
    expect(await store.retryCount('job-r')).toBe(2);

    // Begun (sent): no longer due. EMQX did not take one: due again.
    expect((await store.beginAttempt('job-r', 'fails', 2, 3_000)).outcome).toBe('applied');
    expect((await store.beginAttempt('job-r', 'silent', 2, 3_000)).outcome).toBe('applied');
    expect(await store.dueRetries('job-r', 10, 10_000)).toEqual([]);
    expect((await store.attemptNotDelivered('job-r', 'silent', 2, 3_500)).outcome).toBe('applied');
    expect((await store.dueRetries('job-r', 10, 10_000)).map((e) => e.clientId)).toEqual(['silent']);
    // Failing again: its one FAILED retry is used up.
    await store.apply('job-r', 'fails', report('r4', 'FAILED', 3_100));
    expect(await store.countRetryable('job-r', settings)).toEqual({ failed: 0, timedOut: 0 });

    // An abort cancels the open ones: the one in progress is a rollback target, with the one that succeeded.
    await store.endOpen('job-r', 'CANCELED', 10);
    expect(await store.rollbackTargets('job-r')).toEqual(['busy', 'ok']);
  });

  it('applies a batch of reports in one read and one write: each target\'s in order, duplicates and stale ones changing nothing, new targets created', async () => {
    await store.queue('job-m', ['m1', 'm2', 'm3'], 1_000);
    await store.apply('job-m', 'm3', report('m3-ok', 'SUCCEEDED', 1_100));
    const bulk = vi.spyOn(Collection.prototype, 'bulkWrite');
    try {
      await store.applyMany([
        { jobId: 'job-m', clientId: 'm1', report: report('m1-p', 'IN_PROGRESS', 1_200, 40) },
        { jobId: 'job-m', clientId: 'm1', report: report('m1-ok', 'SUCCEEDED', 1_300) },
        // Received later but earlier at EMQX: stale after the verdict.
        { jobId: 'job-m', clientId: 'm1', report: report('m1-late', 'IN_PROGRESS', 1_250, 60) },
        { jobId: 'job-m', clientId: 'm2', report: report('m2-f', 'FAILED', 1_200) },
        { jobId: 'job-m', clientId: 'm3', report: report('m3-ok', 'SUCCEEDED', 1_100) },
        // No record yet (the report beat the QUEUED write).
        { jobId: 'job-m', clientId: 'm4', report: report('m4-p', 'IN_PROGRESS', 1_200, 10) },
      ]);
      expect(bulk).toHaveBeenCalledTimes(1);
      // m3 said nothing new: only m1, m2 and m4 were written.
      expect(bulk.mock.calls[0]?.[0]).toHaveLength(3);
    } finally {
      bulk.mockRestore();
    }
    const found = await store.many('job-m', ['m1', 'm2', 'm3', 'm4']);
    expect(found.get('m1')).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: 'm1-ok', queuedAt: 1_000, updates: 2 });
    expect(found.get('m2')).toMatchObject({ status: 'FAILED', messageId: 'm2-f' });
    expect(found.get('m3')).toMatchObject({ status: 'SUCCEEDED', messageId: 'm3-ok', updates: 1 });
    expect(found.get('m4')).toMatchObject({ status: 'IN_PROGRESS', progress: 10 });
    expect(found.get('m4')).not.toHaveProperty('writer');
    expect(await store.counts('job-m')).toMatchObject({ SUCCEEDED: 2, FAILED: 1, IN_PROGRESS: 1 });
  });

  it('a batch write that loses a target to another writer applies that target\'s reports again on what won', async () => {
    await store.queue('job-c', ['c1', 'c2'], 1_000);
    const other = new JobExecutionStore(database.db);
    const original = Collection.prototype.bulkWrite;
    const bulk = vi.spyOn(Collection.prototype, 'bulkWrite').mockImplementationOnce(async function (this: Collection, ...args: Parameters<Collection['bulkWrite']>) {
      // Between the batch's read and its write, another writer moves c1 and creates c3.
      await other.apply('job-c', 'c1', report('c1-p', 'IN_PROGRESS', 1_100, 30));
      await other.apply('job-c', 'c3', report('c3-other', 'IN_PROGRESS', 1_050, 5));
      return original.apply(this, args);
    });
    try {
      await store.applyMany([
        { jobId: 'job-c', clientId: 'c1', report: report('c1-ok', 'SUCCEEDED', 1_200) },
        { jobId: 'job-c', clientId: 'c2', report: report('c2-ok', 'SUCCEEDED', 1_200) },
        { jobId: 'job-c', clientId: 'c3', report: report('c3-ok', 'SUCCEEDED', 1_200) },
      ]);
    } finally {
      bulk.mockRestore();
    }
    const found = await store.many('job-c', ['c1', 'c2', 'c3']);
    // c1 and c3: both writers' reports count (two updates each), the verdict last.
    expect(found.get('c1')).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: 'c1-ok', updates: 2 });
    expect(found.get('c3')).toMatchObject({ status: 'SUCCEEDED', progress: 100, messageId: 'c3-ok', updates: 2 });
    expect(found.get('c2')).toMatchObject({ status: 'SUCCEEDED', messageId: 'c2-ok', updates: 1 });
  });

  it('ends open executions (deadline, cancel) and counts them', async () => {
    await store.queue('job-d', ['d1', 'd2']);
    await store.apply('job-d', 'd2', report('m5', 'REJECTED', 10));
    expect(await store.end('job-d', 'd1', 'TIMED_OUT')).toMatchObject({ outcome: 'applied', execution: { status: 'TIMED_OUT' } });
    expect(await store.end('job-d', 'd2', 'CANCELED')).toMatchObject({ outcome: 'final' });
    expect(await store.counts('job-d')).toMatchObject({ TIMED_OUT: 1, REJECTED: 1, QUEUED: 0 });
  });
});

describe('commands waiting for their device', () => {
  it('lists a device waiting commands until they are removed', async () => {
    const waiting = new WaitingCommands(database.db, 0);
    expect(await waiting.forDevice('dev-w')).toEqual([]);
    await waiting.add('dev-w', 'command/dev-w/c1');
    await waiting.add('dev-w', 'command/dev-w/c1');
    await waiting.add('dev-w', 'command/dev-w/c2');
    expect(await waiting.forDevice('dev-w')).toEqual(['command/dev-w/c1', 'command/dev-w/c2']);
    await waiting.remove('dev-w', 'command/dev-w/c1');
    await waiting.remove('dev-w', 'command/dev-w/c2');
    expect(await waiting.forDevice('dev-w')).toEqual([]);
  });
});
