import type { Logger } from 'pino';
import type { DeviceReplyStore, StoredDeviceReply } from '../store/job-replies';
import { GroupCommit } from './group-commit';

/**
 * Applies stored device replies in the background (docs/jobs.md): `POST /emqx/replies` answers
 * once a reply is stored, and this applies it afterwards, so a burst of replies waits here, not
 * in EMQX's HTTP action (which drops a request that waited longer than its `request_ttl`).
 *
 * The replies of one device are applied one at a time, in EMQX receive order (`at`, then the
 * message id): on FerretDB two concurrent applies to one execution can both win (the class comment
 * of src/store/job-executions.ts). Devices are applied side by side, at most `concurrency` at once:
 * FerretDB on SQLite gets slower per apply as concurrent writes grow (docs/capacity.md).
 *
 * Each reply is marked applied after its apply. A reply stored but not applied (an adapter that
 * stopped or crashed, an apply that failed) is found by the sweep once it is `sweepAfterMs` old,
 * by any adapter. Applying a reply again is harmless: the job-status rules make a repeat a no-op
 * (src/domain/job-status.ts, applyJobReport), a command keeps its first reply (`command_replies`
 * is insert-once, the command workflow keeps the first signal).
 */

export interface ReplyApplierOptions {
  /** Devices whose replies are applied at once. */
  concurrency: number;
  /** How often the store is searched for replies not applied. */
  sweepEveryMs: number;
  /** A reply stored this long ago and still not applied is applied by the sweep. */
  sweepAfterMs: number;
  /** Most replies one sweep takes. */
  sweepLimit: number;
}

export const DEFAULT_REPLY_APPLIER_OPTIONS: ReplyApplierOptions = { concurrency: 4, sweepEveryMs: 5_000, sweepAfterMs: 10_000, sweepLimit: 1_000 };

export interface ReplyApplierDeps {
  store: DeviceReplyStore;
  /** Applies one accepted reply; throws when it could not (the reply stays pending). */
  apply(reply: StoredDeviceReply): Promise<void>;
  logger: Logger;
}

export class ReplyApplier {
  /** Replies waiting, per device, in receive order; a device's entry lives while it has work. */
  private readonly queues = new Map<string, StoredDeviceReply[]>();
  /** Keys of the replies waiting or being applied here. */
  private readonly known = new Set<string>();
  /** Devices with replies waiting and no drain running. */
  private readonly ready: string[] = [];
  private readonly marks: GroupCommit<string, void>;
  private active = 0;
  private started = false;
  private stopped = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> = Promise.resolve();
  private readonly drains = new Set<Promise<void>>();
  /** Keys applied while a sweep's query runs: its answer may still list them as pending. */
  private appliedDuringSweep: Set<string> | undefined;
  private readonly options: ReplyApplierOptions;

  constructor(
    private readonly deps: ReplyApplierDeps,
    options: Partial<ReplyApplierOptions> = {},
  ) {
    this.options = { ...DEFAULT_REPLY_APPLIER_OPTIONS, ...options };
    if (!Number.isInteger(this.options.concurrency) || this.options.concurrency < 1) throw new RangeError('replyApplier.concurrency: must be an integer of at least 1');
    this.marks = new GroupCommit((keys) => deps.store.markApplied(keys), { maxItems: 1_000, maxConcurrent: 1 });
  }

  /** Replies stored and not yet applied that this adapter holds (waiting or being applied). */
  backlog(): number {
    return this.known.size;
  }

  /** Queues stored replies to be applied (accepted ones; those already here are skipped). */
  enqueue(replies: readonly StoredDeviceReply[]): void {
    if (this.stopped) return;
    for (const reply of replies) {
      if (!reply.accepted || this.known.has(reply.key)) continue;
      this.known.add(reply.key);
      const queue = this.queues.get(reply.clientId);
      if (queue) {
        queue.push(reply);
        queue.sort(receiveOrder);
      } else {
        this.queues.set(reply.clientId, [reply]);
        this.ready.push(reply.clientId);
      }
    }
    this.pump();
  }

  /** Starts applying, and sweeping for replies no adapter applied. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.pump();
    this.scheduleSweep(0);
  }

  /** Stops taking work and waits for the applies in flight; what is left stays pending in the store. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.sweepTimer);
    await this.sweeping;
    await Promise.allSettled([...this.drains]);
  }

  private pump(): void {
    while (this.started && !this.stopped && this.active < this.options.concurrency && this.ready.length > 0) {
      const clientId = this.ready.shift() as string;
      this.active++;
      const drain = this.drain(clientId).finally(() => {
        this.active--;
        this.drains.delete(drain);
        this.pump();
      });
      this.drains.add(drain);
    }
  }

  /** Applies the device's replies one after another until its queue is empty. */
  private async drain(clientId: string): Promise<void> {
    const queue = this.queues.get(clientId) ?? [];
    while (queue.length > 0 && !this.stopped) {
      const reply = queue.shift() as StoredDeviceReply;
      try {
        await this.deps.apply(reply);
        await this.marks.submit([reply.key]);
      } catch (err) {
        // Left pending in the store: the sweep applies it again later.
        this.deps.logger.warn({ err, clientId, messageId: reply.messageId }, 'could not apply a device reply; the sweep will retry it');
        this.appliedDuringSweep?.add(reply.key);
      } finally {
        this.known.delete(reply.key);
      }
    }
    for (const left of queue) this.known.delete(left.key);
    this.queues.delete(clientId);
  }

  private scheduleSweep(delayMs: number): void {
    if (this.stopped) return;
    this.sweepTimer = setTimeout(() => {
      this.sweeping = this.sweep().finally(() => this.scheduleSweep(this.options.sweepEveryMs));
    }, delayMs);
  }

  private async sweep(): Promise<void> {
    const applied = new Set<string>();
    this.appliedDuringSweep = applied;
    try {
      const found = await this.deps.store.unapplied(new Date(Date.now() - this.options.sweepAfterMs), this.options.sweepLimit);
      this.enqueue(found.filter((reply) => !applied.has(reply.key)));
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not look for device replies not applied');
    } finally {
      this.appliedDuringSweep = undefined;
    }
  }
}

function receiveOrder(a: StoredDeviceReply, b: StoredDeviceReply): number {
  return a.at - b.at || (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0);
}
