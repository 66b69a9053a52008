/**
 * The presence-reconciliation workflow's contract (reconcilePresence, started by the
 * `presence-reconcile` schedule or `device-ops presence reconcile`): what one comparison of EMQX's
 * live clients with recorded presence found and corrected.
 */
export interface ReconcileReport {
  live: number;
  recordedOnline: number;
  /** Recorded online, absent from EMQX: told "not connected". */
  markedOffline: number;
  /** Connected in EMQX, not recorded online, tracked (docs/presence.md): told "connected since". */
  markedOnline: number;
  /** Connected in EMQX, not tracked: left to the history. */
  untracked: number;
  observedAt: string;
}
