import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { longRunning, withAttempts } from './activity-options';
import type { ReconcileReport } from '../contracts/presence-reconcile';

/** A few tries: the next scheduled run compares again anyway. */
const { reconcileWithLiveClients } = proxyActivities<Activities>(withAttempts(longRunning, 5));

/** Started by the `presence-reconcile` schedule (or `device-ops presence reconcile`): one comparison of EMQX and recorded presence. */
export async function reconcilePresence(): Promise<ReconcileReport> {
  return reconcileWithLiveClients();
}
