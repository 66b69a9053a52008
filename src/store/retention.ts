import type { Db } from 'mongodb';

/**
 * Retention of the collections that grow with traffic. FerretDB 1.24 has no TTL indexes, so a
 * sweep deletes what is older than each collection's retention, by a time field that has an index
 * (History.ensureIndexes) so that on MongoDB the delete is a range on that index, not a scan. The
 * inbox needs none: its buckets are dropped whole once delivered (event-inbox.ts).
 * Kept for good: devices, audit (the operator's trail), alarms, campaigns (with their job executions
 * and command replies) and fleet results.
 */

export interface RetentionPolicy {
  /** connection_events, device_events and device_replies (RETENTION_EVENTS); 0 keeps them for good. */
  eventsMs: number;
  /** stats_snapshots (RETENTION_STATS). */
  statsMs: number;
  /** presence_dead_letters (RETENTION_DEAD_LETTERS). */
  deadLettersMs: number;
}

/** What each sweep deletes: documents whose ISO-8601 UTC `field` is before now minus the retention. */
export const RETAINED_COLLECTIONS: readonly { collection: string; field: string; policy: keyof RetentionPolicy }[] = [
  { collection: 'connection_events', field: 'at', policy: 'eventsMs' },
  { collection: 'device_events', field: 'at', policy: 'eventsMs' },
  { collection: 'device_replies', field: 'receivedAt', policy: 'eventsMs' },
  { collection: 'stats_snapshots', field: 'at', policy: 'statsMs' },
  { collection: 'presence_dead_letters', field: 'deadLetteredAt', policy: 'deadLettersMs' },
];

/** One sweep: deletes what is past retention; returns the count deleted per collection. */
export async function sweepRetention(db: Db, policy: RetentionPolicy, now = Date.now()): Promise<Record<string, number>> {
  const deleted: Record<string, number> = {};
  for (const { collection, field, policy: key } of RETAINED_COLLECTIONS) {
    const keepMs = policy[key];
    if (keepMs <= 0) continue;
    // Times are stored as ISO-8601 UTC strings (toISOString), which sort as they compare.
    const cutoff = new Date(now - keepMs).toISOString();
    const { deletedCount } = await db.collection(collection).deleteMany({ [field]: { $lt: cutoff } });
    deleted[collection] = deletedCount;
  }
  return deleted;
}

/**
 * Sweeps every `intervalMs` (the first a minute after start), in the worker process. Several
 * workers sweeping at once delete the same documents: harmless, and the sweep is off the hot path.
 */
export function startRetentionSweeps(
  db: Db,
  policy: RetentionPolicy,
  intervalMs: number,
  log: { info(message: string, meta?: Record<string, unknown>): void; warn(message: string, meta?: Record<string, unknown>): void },
): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = (): void => {
    sweepRetention(db, policy).then(
      (deleted) => {
        if (Object.values(deleted).some((n) => n > 0)) log.info('retention sweep', { deleted });
      },
      (err: unknown) => log.warn('retention sweep failed', { error: err instanceof Error ? err.message : String(err) }),
    ).finally(() => {
      if (!stopped) timer = setTimeout(run, intervalMs).unref();
    });
  };
  timer = setTimeout(run, Math.min(intervalMs, 60_000)).unref();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
