import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ReconcileReport } from '../contracts/presence-reconcile';

const { reconcileWithLiveClients } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
});

/** Started by the `presence-reconcile` schedule (or `device-ops presence reconcile`): one comparison of EMQX and recorded presence. */
export async function reconcilePresence(): Promise<ReconcileReport> {
  return reconcileWithLiveClients();
}
