import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BrokerStatsSnapshotResult } from '../contracts/stats';

const { takeStatsSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', maximumInterval: '20 seconds', maximumAttempts: 5 },
});

/** Started by the `broker-stats` schedule; its workflow id (unique per run) keys the snapshot. */
export async function snapshotBrokerStats(): Promise<BrokerStatsSnapshotResult> {
  return takeStatsSnapshot({ id: workflowInfo().workflowId });
}
