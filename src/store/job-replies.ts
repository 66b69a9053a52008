import type { Collection, Db } from 'mongodb';
import type { CommandReplyStatus, DeviceReply } from '../domain/schemas/device-reply';
import { insertNew } from './bulk-upsert';

/**
 * Device replies as the webhook adapter received them (`device_replies`, once per EMQX message id),
 * accepted or not, with the reason when not; and each command's answer (`command_replies`, the
 * first accepted reply per command), which the command workflow reads if its signal was lost.
 *
 * An accepted reply is stored with `pending: true` and applied afterwards by the adapter's
 * applier (src/webhook/reply-applier.ts), which then removes the field: a reply that keeps it is
 * stored and not yet applied (docs/jobs.md).
 */

export type StoredDeviceReply = DeviceReply & { key: string; receivedAt: string; pending?: true };

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

  constructor(db: Db) {
    this.replies = db.collection('device_replies');
    this.commandReplies = db.collection('command_replies');
  }

  async ensureIndexes(): Promise<void> {
    await this.replies.createIndex({ clientId: 1, at: -1 });
    await this.replies.createIndex({ pending: 1, receivedAt: 1 });
  }

  /** The document of a reply received at `receivedAt`; accepted replies are pending until applied. */
  static document(reply: DeviceReply, receivedAt: Date): StoredDeviceReply {
    const key = JSON.stringify(['reply', reply.messageId]);
    return { key, receivedAt: receivedAt.toISOString(), ...reply, ...(reply.accepted ? { pending: true as const } : {}) };
  }

  /** Stores each reply once (by message id); returns the positions of those that were new. */
  async insert(docs: readonly StoredDeviceReply[]): Promise<number[]> {
    return insertNew(
      this.replies,
      docs.map((doc) => ({ _id: doc.key, ...doc })),
    );
  }

  /** Stores each reply once (by message id); returns how many were new. */
  async record(replies: readonly DeviceReply[], receivedAt: Date): Promise<number> {
    return (await this.insert(replies.map((reply) => DeviceReplyStore.document(reply, receivedAt)))).length;
  }

  /** The replies were applied: they leave the backlog. */
  async markApplied(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.replies.updateMany({ _id: { $in: [...keys] } }, { $unset: { pending: '' } });
  }

  /** Up to `limit` replies stored at or before `receivedBefore` and not applied, in EMQX receive order. */
  async unapplied(receivedBefore: Date, limit: number): Promise<StoredDeviceReply[]> {
    return this.replies
      .find({ pending: true, receivedAt: { $lte: receivedBefore.toISOString() } }, { projection: { _id: 0 } })
      .sort({ at: 1, messageId: 1 })
      .limit(limit)
      .toArray();
  }

  /** How many stored replies are not applied yet, by any adapter. */
  async countUnapplied(): Promise<number> {
    return this.replies.countDocuments({ pending: true });
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
