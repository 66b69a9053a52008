import type { CampaignStore } from './campaigns';

/**
 * Which running campaigns wait to publish to a device that has just connected, so the device's
 * workflow can tell them (presenceEventsSignal). The ids of running campaigns that wait for offline
 * devices are cached for `refreshMs`; for each, one lookup by `_id` in `campaign_waiting`, which is
 * cheap on MongoDB and FerretDB alike. With no such campaign running, the usual case, a connect
 * costs nothing more.
 */
export class WaitingCampaigns {
  private cached: { ids: string[]; at: number; read: number } | null = null;
  private loading: { ids: Promise<string[]>; read: number } | null = null;
  /** Reads of the running ids numbered in order: the last one created, and the last one that began. */
  private reads = 0;
  private began = 0;

  constructor(
    private readonly store: CampaignStore,
    private readonly refreshMs: number,
  ) {}

  /**
   * The running campaigns with a waiting record for this device. `fresh`: the list of running
   * campaigns comes from a read that began after this call (concurrent callers share it), so a
   * campaign created just before is never missed; the device workflow's lookup after the
   * re-apply needs that, or a campaign started within `refreshMs` would not be woken.
   */
  async forDevice(clientId: string, options: { fresh?: boolean } = {}): Promise<string[]> {
    const ids = await this.runningIds(options.fresh ? this.began : null);
    if (ids.length === 0) return [];
    const entries = await Promise.all(ids.map((campaignId) => this.store.waitingEntry(campaignId, clientId)));
    return ids.filter((_, i) => entries[i] !== null);
  }

  /**
   * `forDevice` for callers that go on without the answer: a failed lookup costs only the shortcut
   * (the campaigns' own rechecks still reach the device). `onError` gets the failure to log.
   */
  async forDeviceOrNone(clientId: string, onError: (message: string) => void, options: { fresh?: boolean } = {}): Promise<string[]> {
    try {
      return await this.forDevice(clientId, options);
    } catch (err) {
      onError(err instanceof Error ? err.message : String(err));
      return [];
    }
  }

  /** `readsBefore`: null accepts a cached list younger than `refreshMs`; a number needs a read numbered above it (one that began later). */
  private async runningIds(readsBefore: number | null): Promise<string[]> {
    const fits = (read: number): boolean => readsBefore === null || read > readsBefore;
    if (this.cached && fits(this.cached.read) && (readsBefore !== null || Date.now() - this.cached.at < this.refreshMs)) return this.cached.ids;
    if (this.loading && fits(this.loading.read)) return this.loading.ids;
    // A read under way that began too early is followed by one more, shared by all who need it.
    const previous = this.loading?.ids.catch(() => undefined);
    const read = ++this.reads;
    const ids = (async () => {
      await previous;
      this.began = read;
      const found = await this.store.waitingCampaignIds();
      if (!this.cached || this.cached.read < read) this.cached = { ids: found, at: Date.now(), read };
      return found;
    })().finally(() => {
      if (this.loading?.read === read) this.loading = null;
    });
    this.loading = { ids, read };
    return ids;
  }
}
