/**
 * The broker-statistics workflow's contract (snapshotBrokerStats, started by the `broker-stats`
 * schedule): what one run returns.
 */
export interface BrokerStatsSnapshotResult {
  /** Clients online when the snapshot was taken. */
  online: number;
}
