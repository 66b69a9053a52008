/** The `fleet_results` collection: one row per device of a fleet provisioning run. */
export interface FleetResult {
  fleetId: string;
  clientId: string;
  status: 'provisioned' | 'failed';
  error?: string;
  at: string;
}
