import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { DeviceOperationKey } from '../domain/search-attributes';
import { reconcilePresence } from '../workflows/presence-reconcile';
import { snapshotBrokerStats } from '../workflows/stats';

export const STATS_SCHEDULE_ID = 'broker-stats';
export const PRESENCE_RECONCILE_SCHEDULE_ID = 'presence-reconcile';

/**
 * `DeviceOperation` of the scheduled housekeeping runs (a stats snapshot every minute), so the
 * Temporal UI's saved view for device work can exclude them:
 * `DeviceOperation NOT IN ("broker-stats", "presence-reconcile")`.
 */
export const HOUSEKEEPING_OPERATIONS = { stats: 'broker-stats', reconcile: 'presence-reconcile' } as const;

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

/** The statistics snapshot schedule (docs/cli.md, "broker-stats"), every `intervalMs`. */
export function ensureStatsSchedule(
  client: Client,
  options: { taskQueue: string; intervalMs: number; scheduleId?: string },
): Promise<'created' | 'updated'> {
  return ensureSchedule(client, {
    scheduleId: options.scheduleId ?? STATS_SCHEDULE_ID,
    spec: { intervals: [{ every: options.intervalMs }] },
    action: {
      type: 'startWorkflow',
      workflowType: snapshotBrokerStats,
      args: [],
      taskQueue: options.taskQueue,
      workflowId: options.scheduleId ?? STATS_SCHEDULE_ID,
      // One run a minute: tagged so the saved views in docs/cli.md can leave housekeeping out.
      typedSearchAttributes: [{ key: DeviceOperationKey, value: HOUSEKEEPING_OPERATIONS.stats }],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
  });
}

/**
 * Presence reconciliation every `intervalMs` (PRESENCE_RECONCILE_INTERVAL): a webhook EMQX dropped
 * is corrected within one period. One run at a time; a run that overlaps the next is skipped.
 */
export function ensurePresenceReconcileSchedule(client: Client, options: { taskQueue: string; intervalMs: number; scheduleId?: string }): Promise<'created' | 'updated'> {
  return ensureSchedule(client, {
    scheduleId: options.scheduleId ?? PRESENCE_RECONCILE_SCHEDULE_ID,
    spec: { intervals: [{ every: options.intervalMs }] },
    action: {
      type: 'startWorkflow',
      workflowType: reconcilePresence,
      args: [],
      taskQueue: options.taskQueue,
      workflowId: options.scheduleId ?? PRESENCE_RECONCILE_SCHEDULE_ID,
      typedSearchAttributes: [{ key: DeviceOperationKey, value: HOUSEKEEPING_OPERATIONS.reconcile }],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
  });
}
