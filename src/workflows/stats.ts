import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { takeStatsSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', maximumInterval: '20 seconds', maximumAttempts: 5 },
});

/** Started by the `broker-stats` schedule; its workflow id (unique per run) keys the snapshot. */
export async function snapshotBrokerStats(): Promise<{ online: number }> {
  return takeStatsSnapshot({ id: workflowInfo().workflowId });
}
