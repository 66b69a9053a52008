import type { Collection, Db } from 'mongodb';

/**
 * Commands waiting for their device to connect (`command_waiting`, one document per device, `_id`
 * the client id, holding the waiting commands' workflow ids), so the webhook adapter can wake them
 * on a connect. Every read and write goes by `_id`. The ids of devices with waiting commands are
 * cached for `refreshMs`: with none waiting, the usual case, a connect costs one cached check.
 */

interface WaitingDoc {
  _id: string;
  workflowIds: string[];
}

export class WaitingCommands {
  private readonly waiting: Collection<WaitingDoc>;
  private cached: { ids: Set<string>; at: number } | null = null;
  private loading: Promise<Set<string>> | null = null;

  constructor(
    db: Db,
    private readonly refreshMs = 5_000,
  ) {
    this.waiting = db.collection('command_waiting');
  }

  async add(clientId: string, workflowId: string): Promise<void> {
    await this.waiting.updateOne({ _id: clientId }, { $addToSet: { workflowIds: workflowId } }, { upsert: true });
  }

  async remove(clientId: string, workflowId: string): Promise<void> {
    await this.waiting.updateOne({ _id: clientId }, { $pull: { workflowIds: workflowId } });
  }

  /** The workflow ids of the commands waiting for this device (cached as described above). */
  async forDevice(clientId: string): Promise<string[]> {
    const devices = await this.devicesWaiting();
    if (!devices.has(clientId)) return [];
    const doc = await this.waiting.findOne({ _id: clientId });
    return doc?.workflowIds ?? [];
  }

  private async devicesWaiting(): Promise<Set<string>> {
    if (this.cached && Date.now() - this.cached.at < this.refreshMs) return this.cached.ids;
    this.loading ??= this.waiting
      .find({ 'workflowIds.0': { $exists: true } }, { projection: { _id: 1 } })
      .toArray()
      .then((docs) => {
        const ids = new Set(docs.map((d) => d._id));
        this.cached = { ids, at: Date.now() };
        return ids;
      })
      .finally(() => (this.loading = null));
    return this.loading;
  }
}
