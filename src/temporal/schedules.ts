import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { DeviceOperationKey } from '../domain/search-attributes';

export const STATS_SCHEDULE_ID = 'broker-stats';
export const PRESENCE_RECONCILE_SCHEDULE_ID = 'presence-reconcile';

/**
 * `DeviceOperation` of the scheduled housekeeping runs (a stats snapshot every minute), so the
 * Temporal UI's saved view for device work can exclude them:
 * `DeviceOperation NOT IN ("broker-stats", "presence-reconcile")`.
 */
export const HOUSEKEEPING_OPERATIONS = { stats: STATS_SCHEDULE_ID, reconcile: PRESENCE_RECONCILE_SCHEDULE_ID } as const;

/**
 * Creates a schedule, or updates it to these options if it exists: safe to run at every start of
 * every worker. Catch-up is limited so a worker that was down for hours does not run a backlog.
 */
export async function ensureSchedule(client: Client, options: ScheduleOptions): Promise<'created' | 'updated'> {
  try {
    await client.schedule.create(options);
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(options.scheduleId).update((previous) => ({
      ...previous,
      spec: options.spec,
      action: options.action,
      policies: { ...previous.policies, ...options.policies },
    }));
    return 'updated';
  }
}

interface HousekeepingOptions {
  taskQueue: string;
  intervalMs: number;
  /** Defaults to the schedule's well-known id; the schedule's runs take the same id. */
  scheduleId?: string;
}

/**
 * A housekeeping workflow every `intervalMs`, one run at a time (a run that overlaps the next is
 * skipped), its runs tagged with their `DeviceOperation` so the saved views in docs/cli.md can
 * leave them out.
 */
function ensureHousekeepingSchedule(
  client: Client,
  workflowType: 'snapshotBrokerStats' | 'reconcilePresence',
  operation: (typeof HOUSEKEEPING_OPERATIONS)[keyof typeof HOUSEKEEPING_OPERATIONS],
  options: HousekeepingOptions,
): Promise<'created' | 'updated'> {
  const scheduleId = options.scheduleId ?? operation;
  return ensureSchedule(client, {
    scheduleId,
    spec: { intervals: [{ every: options.intervalMs }] },
    action: {
      type: 'startWorkflow',
      workflowType,
      args: [],
      taskQueue: options.taskQueue,
      workflowId: scheduleId,
      typedSearchAttributes: [{ key: DeviceOperationKey, value: operation }],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
  });
}

/** The statistics snapshot schedule (docs/cli.md, "broker-stats"), every `intervalMs`. */
export function ensureStatsSchedule(client: Client, options: HousekeepingOptions): Promise<'created' | 'updated'> {
  return ensureHousekeepingSchedule(client, 'snapshotBrokerStats', HOUSEKEEPING_OPERATIONS.stats, options);
}

/**
 * Presence reconciliation every `intervalMs` (PRESENCE_RECONCILE_INTERVAL): a webhook EMQX dropped
 * is corrected within one period.
 */
export function ensurePresenceReconcileSchedule(client: Client, options: HousekeepingOptions): Promise<'created' | 'updated'> {
  return ensureHousekeepingSchedule(client, 'reconcilePresence', HOUSEKEEPING_OPERATIONS.reconcile, options);
}
