import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { standard, withAttempts } from './activity-options';
import type { BrokerStatsSnapshotResult } from '../contracts/stats';

/** A few tries: a missed snapshot is taken again a minute later by the next scheduled run. */
const { takeStatsSnapshot } = proxyActivities<Activities>(withAttempts(standard, 5));

/** Started by the `broker-stats` schedule; its workflow id (unique per run) keys the snapshot. */
export async function snapshotBrokerStats(): Promise<BrokerStatsSnapshotResult> {
  return takeStatsSnapshot({ id: workflowInfo().workflowId });
}
