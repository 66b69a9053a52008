import { randomUUID } from 'node:crypto';
import type { AnyBulkWriteOperation, Collection, Db } from 'mongodb';
import {
  applyJobReport,
  beginJobAttempt,
  emptyJobStatusCounts,
  endJobExecution,
  JOB_EXECUTION_STATUSES,
  jobAttemptNotDelivered,
  newJobExecution,
  scheduleJobRetry,
  type ApplyOutcome,
  type JobExecution,
  type JobRetrySettings,
  type JobStatusCounts,
  type JobStatusReport,
} from '../domain/job-status';
import { DUPLICATE_KEY, duplicateKeyPositions, insertNew, UPDATES_PER_COMMAND } from './bulk-upsert';

/**
 * Per-target job executions (`job_executions`, one document per job and device, `_id`
 * `<jobId>/<clientId>`), moved by device reports with the rules of src/domain/job-status.ts.
 * Reports are applied here, not signalled into a workflow: 100,000 targets answering would be
 * 100,000+ signals into one history (docs/jobs.md). A campaign reads the counts instead.
 *
 * Each apply is a compare-and-set on the document's `version`: with MongoDB, two adapters applying
 * reports of one device at once cannot lose one (the loser reads again and re-applies its report
 * to what won). FerretDB 1.x on SQLite evaluates the filter of a replace apart from the write, so
 * two replaces conditional on the same version can both succeed (measured: 12 of 20 rounds of 10
 * concurrent replaces had several winners; concurrent inserts of one `_id` never did). So a store
 * also runs the applies of one target one at a time: one adapter is safe on either database;
 * several adapters need MongoDB (docs/jobs.md).
 */

interface StoredExecution extends JobExecution {
  _id: string;
  version: number;
  /** The batch of applyMany that wrote this version: how a batch tells the writes it lost. */
  writer?: string;
}

/** A device report for applyMany: the job, the target and what it said. */
export interface TargetReport {
  jobId: string;
  clientId: string;
  report: JobStatusReport;
}

/** Compare-and-set attempts before giving up (each loss means another report of the same target was applied). */
const MAX_ATTEMPTS = 20;

export class JobExecutionConflictError extends Error {
  readonly type = 'JobExecutionConflictError';
}

export const jobExecutionKey = (jobId: string, clientId: string): string => `${jobId}/${clientId}`;

export class JobExecutionStore {
  private readonly executions: Collection<StoredExecution>;
  /** The tail of each target's queue of transitions, while one runs. */
  private readonly running = new Map<string, Promise<unknown>>();

  constructor(db: Db) {
    this.executions = db.collection('job_executions');
  }

  async ensureIndexes(): Promise<void> {
    await this.executions.createIndex({ jobId: 1, status: 1 });
    // Retries due (dueRetries).
    await this.executions.createIndex({ jobId: 1, retryAt: 1 });
  }

  /**
   * Records the targets (of campaign chunk `chunk`) as QUEUED (delivered at `queuedAt`); targets
   * that have a record keep it as it is (a report may beat this write; a second writer here would
   * race with the adapter's, which FerretDB may lose: see the class comment).
   */
  async queue(jobId: string, clientIds: readonly string[], queuedAt?: number, chunk?: number): Promise<void> {
    await insertNew(this.executions, clientIds.map((clientId) => ({ _id: jobExecutionKey(jobId, clientId), ...newJobExecution(jobId, clientId, queuedAt, chunk), version: 0 })));
  }

  /**
   * Sends up to `limit` FAILED / TIMED_OUT executions with retries of their type left back to
   * QUEUED as their next attempt (src/domain/job-status.ts, scheduleJobRetry). Returns how many it
   * looked at: fewer than `limit` means none is left.
   */
  async scheduleRetries(jobId: string, settings: JobRetrySettings, limit: number, now: number): Promise<number> {
    const candidates = await this.executions.find(retryableFilter(jobId, settings), { projection: { clientId: 1 } }).limit(limit).toArray();
    for (const { clientId } of candidates) await this.transition(jobId, clientId, (current) => scheduleJobRetry(current, settings, now));
    return candidates.length;
  }

  /** How many FAILED / TIMED_OUT executions have retries left (a report since the last scheduleRetries). */
  async countRetryable(jobId: string, settings: JobRetrySettings): Promise<{ failed: number; timedOut: number }> {
    const [failed, timedOut] = await Promise.all([
      settings.failed ? this.executions.countDocuments(retryableFilter(jobId, { failed: settings.failed })) : 0,
      settings.timedOut ? this.executions.countDocuments(retryableFilter(jobId, { timedOut: settings.timedOut })) : 0,
    ]);
    return { failed, timedOut };
  }

  /** Up to `limit` executions whose retry is due (and not yet delivered) at `now`. */
  async dueRetries(jobId: string, limit: number, now: number): Promise<JobExecution[]> {
    const docs = await this.executions.find({ jobId, retryAt: { $lte: now } }).limit(limit).toArray();
    return docs.map(withoutBookkeeping);
  }

  /** Attempt `attempt` is about to be published at `at` (beginJobAttempt). */
  async beginAttempt(jobId: string, clientId: string, attempt: number, at: number): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    return this.transition(jobId, clientId, (current) => beginJobAttempt(current, attempt, at));
  }

  /** EMQX did not take attempt `attempt`: due again at `now` (jobAttemptNotDelivered). */
  async attemptNotDelivered(jobId: string, clientId: string, attempt: number, now: number): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    return this.transition(jobId, clientId, (current) => jobAttemptNotDelivered(current, attempt, now));
  }

  /**
   * The targets a rollback goes to (docs/jobs.md): executions that SUCCEEDED, or were IN_PROGRESS
   * when the campaign's end (an abort) cancelled them; in client id order.
   */
  async rollbackTargets(jobId: string): Promise<string[]> {
    const docs = await this.executions
      .find({ jobId, $or: [{ status: 'SUCCEEDED' }, { status: 'CANCELED', wasInProgress: true }] }, { projection: { clientId: 1 } })
      .sort({ clientId: 1 })
      .toArray();
    return docs.map((d) => d.clientId);
  }

  /** Retries of the job's executions so far, all targets together. */
  async retryCount(jobId: string): Promise<number> {
    const groups = await this.executions.aggregate<{ n: number }>([{ $match: { jobId, retries: { $gt: 0 } } }, { $group: { _id: null, n: { $sum: '$retries' } } }]).toArray();
    return groups[0]?.n ?? 0;
  }

  /**
   * Ends up to `limit` open executions of the job as `status`: with a reply timeout, those
   * delivered at least `timeoutMs` before `now` (each timed out at its delivery + `timeoutMs`),
   * else all (a deadline, a cancel: at `now`). Returns how many it looked at: fewer than `limit`
   * means none is left.
   */
  async endOpen(jobId: string, status: 'TIMED_OUT' | 'CANCELED', limit: number, replyTimeout?: { now: number; timeoutMs: number }): Promise<number> {
    const now = replyTimeout?.now ?? Date.now();
    const filter = { jobId, status: { $in: ['QUEUED' as const, 'IN_PROGRESS' as const] }, ...(replyTimeout ? { queuedAt: { $lte: now - replyTimeout.timeoutMs } } : {}) };
    const open = await this.executions.find(filter, { projection: { clientId: 1, queuedAt: 1 } }).limit(limit).toArray();
    for (const { clientId, queuedAt } of open) {
      const at = replyTimeout && queuedAt !== undefined ? queuedAt + replyTimeout.timeoutMs : now;
      await this.end(jobId, clientId, status, at);
    }
    return open.length;
  }

  /** The executions of these targets of the job, by client id. */
  async many(jobId: string, clientIds: readonly string[]): Promise<Map<string, JobExecution>> {
    const docs = await this.executions.find({ _id: { $in: clientIds.map((clientId) => jobExecutionKey(jobId, clientId)) } }).toArray();
    return new Map(docs.map((doc) => [doc.clientId, withoutBookkeeping(doc)]));
  }

  /** Applies one device report; the target gets a record if it had none (a report may beat the QUEUED write). */
  async apply(jobId: string, clientId: string, report: JobStatusReport): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    return this.transition(jobId, clientId, (current) => applyJobReport(current, report));
  }

  /**
   * Applies many device reports at once, each target's in the order given (EMQX receive order):
   * one read of all their executions, the rules applied in memory, and bulk writes of the changed
   * ones (UPDATES_PER_COMMAND per command), each conditional on the version it read. A target whose
   * write lost (another writer moved it meanwhile) has its reports applied again one by one, as
   * `apply` does. Same outcome as `apply` for each report in turn, without two round trips per report.
   */
  async applyMany(reports: readonly TargetReport[]): Promise<void> {
    const byTarget = new Map<string, TargetReport[]>();
    for (const r of reports) {
      const _id = jobExecutionKey(r.jobId, r.clientId);
      const list = byTarget.get(_id);
      if (list) list.push(r);
      else byTarget.set(_id, [r]);
    }
    if (byTarget.size === 0) return;
    // Applies of this store already under way for these targets finish first (see transition).
    await Promise.all([...byTarget.keys()].map((_id) => this.running.get(_id) ?? Promise.resolve()));
    const stored = new Map((await this.executions.find({ _id: { $in: [...byTarget.keys()] } }).toArray()).map((doc) => [doc._id, doc]));
    const writer = randomUUID();
    const writes: { _id: string; op: AnyBulkWriteOperation<StoredExecution> }[] = [];
    for (const [_id, list] of byTarget) {
      const doc = stored.get(_id);
      let current = doc ? withoutBookkeeping(doc) : newJobExecution((list[0] as TargetReport).jobId, (list[0] as TargetReport).clientId);
      let changed = false;
      for (const { report } of list) {
        const { next, outcome } = applyJobReport(current, report);
        if (outcome === 'applied') [current, changed] = [next, true];
      }
      if (!changed) continue;
      const op: AnyBulkWriteOperation<StoredExecution> = doc
        ? { replaceOne: { filter: { _id, version: doc.version }, replacement: { ...current, version: doc.version + 1, writer } } }
        : { insertOne: { document: { _id, ...current, version: 1, writer } } };
      writes.push({ _id, op });
    }
    const lost = await this.bulkWriteLosers(writes, writer);
    for (const _id of lost) {
      for (const { jobId, clientId, report } of byTarget.get(_id) ?? []) await this.apply(jobId, clientId, report);
    }
  }

  /** Runs the conditional writes of one applyMany batch; returns the `_id`s whose write did not win. */
  private async bulkWriteLosers(writes: readonly { _id: string; op: AnyBulkWriteOperation<StoredExecution> }[], writer: string): Promise<string[]> {
    const lost = new Set<string>();
    // Whether some write may have lost without saying so: a conditional replace that matched no
    // document counts as neither inserted nor modified.
    let unsure = false;
    for (let from = 0; from < writes.length; from += UPDATES_PER_COMMAND) {
      const slice = writes.slice(from, from + UPDATES_PER_COMMAND);
      try {
        const result = await this.executions.bulkWrite(slice.map((w) => w.op), { ordered: false });
        if (result.insertedCount + result.modifiedCount < slice.length) unsure = true;
      } catch (err) {
        // A duplicate key: another writer inserted the target's first version meanwhile. The
        // driver reports no counts for the rest of the slice, so they are read back too.
        for (const i of duplicateKeyPositions(err)) lost.add((slice[i] as { _id: string })._id);
        unsure = true;
      }
    }
    if (!unsure) return [];
    const candidates = writes.map((w) => w._id).filter((_id) => !lost.has(_id));
    const ours = await this.executions.find({ _id: { $in: candidates }, writer }, { projection: { _id: 1 } }).toArray();
    const won = new Set(ours.map((d) => d._id));
    for (const _id of candidates) if (!won.has(_id)) lost.add(_id);
    return [...lost];
  }

  /** Ends an open execution (TIMED_OUT, CANCELED; `at`: when it timed out); a final one stays as it is. */
  async end(jobId: string, clientId: string, status: 'TIMED_OUT' | 'CANCELED', at?: number): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    return this.transition(jobId, clientId, (current) => endJobExecution(current, status, at));
  }

  async get(jobId: string, clientId: string): Promise<JobExecution | null> {
    const doc = await this.executions.findOne({ _id: jobExecutionKey(jobId, clientId) });
    return doc ? withoutBookkeeping(doc) : null;
  }

  /** How many of the job's targets are in each state. */
  async counts(jobId: string): Promise<JobStatusCounts> {
    const counts = emptyJobStatusCounts();
    const groups = await this.executions.aggregate<{ _id: string; n: number }>([{ $match: { jobId } }, { $group: { _id: '$status', n: { $sum: 1 } } }]).toArray();
    for (const group of groups) if ((JOB_EXECUTION_STATUSES as readonly string[]).includes(group._id)) counts[group._id as keyof JobStatusCounts] = group.n;
    return counts;
  }

  /** Runs the transitions of one target one after another (see the class comment). */
  private transition(
    jobId: string,
    clientId: string,
    rule: (current: JobExecution) => { next: JobExecution; outcome: ApplyOutcome },
  ): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    const _id = jobExecutionKey(jobId, clientId);
    const previous = this.running.get(_id) ?? Promise.resolve();
    const result = previous.then(
      () => this.compareAndSet(_id, jobId, clientId, rule),
      () => this.compareAndSet(_id, jobId, clientId, rule),
    );
    const tail = result.catch(() => undefined);
    this.running.set(_id, tail);
    void tail.then(() => {
      if (this.running.get(_id) === tail) this.running.delete(_id);
    });
    return result;
  }

  private async compareAndSet(
    _id: string,
    jobId: string,
    clientId: string,
    rule: (current: JobExecution) => { next: JobExecution; outcome: ApplyOutcome },
  ): Promise<{ execution: JobExecution; outcome: ApplyOutcome }> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.executions.findOne({ _id });
      const current = stored ? withoutBookkeeping(stored) : newJobExecution(jobId, clientId);
      const { next, outcome } = rule(current);
      if (outcome !== 'applied') return { execution: current, outcome };
      if (await this.write(_id, stored?.version, next)) return { execution: next, outcome };
    }
    throw new JobExecutionConflictError(`job execution ${_id}: ${MAX_ATTEMPTS} concurrent writes in a row; try again`);
  }

  /** Writes `next` if the stored version is still `version` (undefined: no document yet). */
  private async write(_id: string, version: number | undefined, next: JobExecution): Promise<boolean> {
    if (version === undefined) {
      try {
        await this.executions.insertOne({ _id, ...next, version: 1 });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === DUPLICATE_KEY) return false;
        throw err;
      }
    }
    const result = await this.executions.replaceOne({ _id, version }, { ...next, version: version + 1 });
    return result.modifiedCount === 1;
  }
}

/** FAILED / TIMED_OUT executions with retries of their type left and no retry scheduled yet. */
function retryableFilter(jobId: string, settings: JobRetrySettings): Record<string, unknown> {
  const left = (status: string, field: string, retries: number) => ({ status, $or: [{ [field]: { $exists: false } }, { [field]: { $lt: retries } }] });
  const types = [
    ...(settings.failed && settings.failed.retries > 0 ? [left('FAILED', 'failedRetries', settings.failed.retries)] : []),
    ...(settings.timedOut && settings.timedOut.retries > 0 ? [left('TIMED_OUT', 'timedOutRetries', settings.timedOut.retries)] : []),
  ];
  // No type with retries: a filter that matches nothing.
  return { jobId, retryAt: { $exists: false }, ...(types.length ? { $or: types } : { _id: { $in: [] } }) };
}

function withoutBookkeeping(doc: StoredExecution): JobExecution {
  const { _id: _key, version: _version, writer: _writer, ...execution } = doc;
  return execution;
}
