/** The `audit` collection: one entry per device-administration step (written by activities). */
export interface AuditEntry {
  /** Stable per logical step (workflow run id + step), so a retried activity writes once. */
  key: string;
  clientId: string;
  operation: string;
  outcome: 'succeeded' | 'failed' | 'compensated';
  at: string;
  workflowId?: string;
  details?: Record<string, string | number | boolean | null>;
}
