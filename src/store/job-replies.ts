import type { Collection, Db } from 'mongodb';
import type { CommandReplyStatus, DeviceReply } from '../domain/schemas/device-reply';
import { insertNew } from './bulk-upsert';

/**
 * Device replies as the webhook adapter received them (`device_replies`, once per EMQX message id),
 * accepted or not, with the reason when not; and each command's answer (`command_replies`, the
 * first accepted reply per command), which the command workflow reads if its signal was lost.
 *
 * Accepted replies also go to `reply_backlog` (the whole reply, by the same key) until the adapter's
 * applier (src/webhook/reply-applier.ts) has applied them: the backlog is what is stored and not
 * yet applied (docs/jobs.md). It is a collection of its own, and kept small, because FerretDB 1.x
 * on SQLite reads a whole collection for a filter other than one `_id` (measured on 2,000 replies:
 * an `updateMany` by `_id: {$in: [5 keys]}` 172 ms, five `updateOne` by `_id` in a bulk 60 ms, an
 * insert of many documents in one `insertMany` well under 1 ms each).
 */

export type StoredDeviceReply = DeviceReply & { key: string; receivedAt: string };

export interface CommandReply {
  clientId: string;
  commandId: string;
  status: CommandReplyStatus;
  /** The device's result as JSON text. */
  result?: string;
  messageId: string;
  /** EMQX's receive time (epoch ms). */
  at: number;
}

type WithId<T> = T & { _id: string };

export const commandReplyKey = (clientId: string, commandId: string): string => `${clientId}/${commandId}`;

export class DeviceReplyStore {
  private readonly replies: Collection<WithId<StoredDeviceReply>>;
  private readonly commandReplies: Collection<WithId<CommandReply>>;
  private readonly backlog: Collection<WithId<StoredDeviceReply>>;

  constructor(db: Db) {
    this.replies = db.collection('device_replies');
    this.backlog = db.collection('reply_backlog');
    this.commandReplies = db.collection('command_replies');
  }

  async ensureIndexes(): Promise<void> {
    await this.replies.createIndex({ clientId: 1, at: -1 });
    // Retention (src/store/retention.ts) deletes by the receive time.
    await this.replies.createIndex({ receivedAt: 1 });
    // The sweep walks the backlog in receive order (unapplied).
    await this.backlog.createIndex({ at: 1, messageId: 1 });
  }

  /** The document of a reply received at `receivedAt`. */
  static document(reply: DeviceReply, receivedAt: Date): StoredDeviceReply {
    return { key: JSON.stringify(['reply', reply.messageId]), receivedAt: receivedAt.toISOString(), ...reply };
  }

  /** Stores each reply once (by message id); returns the positions of those that were new. */
  async insert(docs: readonly StoredDeviceReply[]): Promise<number[]> {
    return insertNew(
      this.replies,
      docs.map((doc) => ({ _id: doc.key, ...doc })),
    );
  }

  /**
   * Puts replies in the backlog (each once); returns the positions of those that were not there.
   * A reply applied already and delivered again comes back: applying it again changes nothing.
   */
  async addToBacklog(docs: readonly StoredDeviceReply[]): Promise<number[]> {
    return insertNew(
      this.backlog,
      docs.map((doc) => ({ _id: doc.key, ...doc })),
    );
  }

  /** The replies were applied: they leave the backlog (one write for all). */
  async markApplied(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.backlog.deleteMany({ _id: { $in: [...keys] } });
  }

  /** Up to `limit` replies of the backlog received at or before `receivedBefore`, in EMQX receive order. */
  async unapplied(receivedBefore: Date, limit: number): Promise<StoredDeviceReply[]> {
    return this.backlog
      .find({ receivedAt: { $lte: receivedBefore.toISOString() } }, { projection: { _id: 0 } })
      .sort({ at: 1, messageId: 1 })
      .limit(limit)
      .toArray();
  }

  /** How many stored replies are not applied yet, by any adapter. */
  async countUnapplied(): Promise<number> {
    return this.backlog.countDocuments({});
  }

  /** Keeps the command's first accepted answer; later ones are recorded in `device_replies` only. */
  async saveCommandReply(reply: CommandReply): Promise<void> {
    await insertNew(this.commandReplies, [{ _id: commandReplyKey(reply.clientId, reply.commandId), ...reply }]);
  }

  async commandReply(clientId: string, commandId: string): Promise<CommandReply | null> {
    return this.commandReplies.findOne({ _id: commandReplyKey(clientId, commandId) }, { projection: { _id: 0 } });
  }

  /** The device's replies, newest first, accepted or not. */
  async repliesOf(clientId: string, limit = 50): Promise<StoredDeviceReply[]> {
    return this.replies.find({ clientId }, { projection: { _id: 0 } }).sort({ at: -1 }).limit(limit).toArray();
  }
}
