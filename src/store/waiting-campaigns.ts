import type { CampaignStore } from './campaigns';

/**
 * Which running campaigns wait to publish to a device that has just connected, so the device's
 * workflow can tell them (presenceEventsSignal). The ids of running campaigns that wait for offline
 * devices are cached for `refreshMs`; for each, one lookup by `_id` in `campaign_waiting`, which is
 * cheap on MongoDB and FerretDB alike. With no such campaign running, the usual case, a connect
 * costs nothing more.
 */
export class WaitingCampaigns {
  private cached: { ids: string[]; at: number } | null = null;
  private loading: Promise<string[]> | null = null;

  constructor(
    private readonly store: CampaignStore,
    private readonly refreshMs: number,
  ) {}

  async forDevice(clientId: string): Promise<string[]> {
    const ids = await this.runningIds();
    if (ids.length === 0) return [];
    const entries = await Promise.all(ids.map((campaignId) => this.store.waitingEntry(campaignId, clientId)));
    return ids.filter((_, i) => entries[i] !== null);
  }

  /**
   * `forDevice` for callers that go on without the answer: a failed lookup costs only the shortcut
   * (the campaigns' own rechecks still reach the device). `onError` gets the failure to log.
   */
  async forDeviceOrNone(clientId: string, onError: (message: string) => void): Promise<string[]> {
    try {
      return await this.forDevice(clientId);
    } catch (err) {
      onError(err instanceof Error ? err.message : String(err));
      return [];
    }
  }

  private async runningIds(): Promise<string[]> {
    if (this.cached && Date.now() - this.cached.at < this.refreshMs) return this.cached.ids;
    this.loading ??= this.store
      .waitingCampaignIds()
      .then((ids) => {
        this.cached = { ids, at: Date.now() };
        return ids;
      })
      .finally(() => (this.loading = null));
    return this.loading;
  }
}
