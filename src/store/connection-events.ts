/** The `connection_events` collection: each device's connect and disconnect history, written by the webhook adapter. */
export interface ConnectionEvent {
  key: string;
  clientId: string;
  event: 'connected' | 'disconnected';
  at: string;
  reason?: string;
  connectedAt?: number;
}
