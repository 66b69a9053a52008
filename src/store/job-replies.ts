import type { Collection, Db } from 'mongodb';
import type { CommandReplyStatus, DeviceReply } from '../domain/schemas/device-reply';
import { insertNew } from './bulk-upsert';

/**
 * Device replies as the webhook adapter received them (`device_replies`, once per EMQX message id),
 * accepted or not, with the reason when not; and each command's answer (`command_replies`, the
 * first accepted reply per command), which the command workflow reads if its signal was lost.
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

  constructor(db: Db) {
    this.replies = db.collection('device_replies');
    this.commandReplies = db.collection('command_replies');
  }

  async ensureIndexes(): Promise<void> {
    await this.replies.createIndex({ clientId: 1, at: -1 });
  }

  /** Stores each reply once (by message id); returns how many were new. */
  async record(replies: readonly DeviceReply[], receivedAt: Date): Promise<number> {
    const docs = replies.map((reply) => {
      const key = JSON.stringify(['reply', reply.messageId]);
      return { _id: key, key, receivedAt: receivedAt.toISOString(), ...reply };
    });
    return (await insertNew(this.replies, docs)).length;
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
