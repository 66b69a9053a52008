import type { Logger } from 'pino';
import type { DeviceReplyStore, StoredDeviceReply } from '../store/job-replies';
import { GroupCommit } from './group-commit';

/**
 * Applies stored device replies in the background (docs/jobs.md): `POST /emqx/replies` answers
 * once a reply is stored, and this applies it afterwards, so a burst of replies waits here, not
 * in EMQX's HTTP action (which drops a request that waited longer than its `request_ttl`).
 *
 * Replies are applied in batches: up to `batchSize` devices at once, each with every reply it has
 * waiting, in EMQX receive order (`at`, then the message id). The job statuses of a batch are one
 * read and bulk writes of 40 (JobExecutionStore.applyMany), not two round trips per reply. A device is
 * in one batch at a time: on FerretDB two concurrent applies to one execution can both win (the
 * class comment of src/store/job-executions.ts). At most `concurrency` batches run at once.
 *
 * Each reply is marked applied after its apply. A reply stored but not applied (an adapter that
 * stopped or crashed, an apply that failed) is found by the sweep once it is `sweepAfterMs` old,
 * by any adapter. Applying a reply again is harmless: the job-status rules make a repeat a no-op
 * (src/domain/job-status.ts, applyJobReport), a command keeps its first reply (`command_replies`
 * is insert-once, the command workflow keeps the first signal).
 */

export interface ReplyApplierOptions {
  /** Batches applied at once. */
  concurrency: number;
  /** Most devices in one batch (each with all its waiting replies). */
  batchSize: number;
  /** How often the store is searched for replies not applied. */
  sweepEveryMs: number;
  /** A reply stored this long ago and still not applied is applied by the sweep. */
  sweepAfterMs: number;
  /** Most replies one sweep takes. */
  sweepLimit: number;
}

export const DEFAULT_REPLY_APPLIER_OPTIONS: ReplyApplierOptions = { concurrency: 2, batchSize: 250, sweepEveryMs: 5_000, sweepAfterMs: 10_000, sweepLimit: 1_000 };

export interface ReplyApplierDeps {
  store: DeviceReplyStore;
  /**
   * Applies a batch of accepted replies (each device's in receive order); resolves with the keys of
   * those it could not apply (they stay pending) and why.
   */
  apply(replies: readonly StoredDeviceReply[]): Promise<{ failed: Set<string>; error?: unknown }>;
  logger: Logger;
}

export class ReplyApplier {
  /** Replies waiting, per device, in receive order; a device's entry lives while it has work. */
  private readonly queues = new Map<string, StoredDeviceReply[]>();
  /** Keys of the replies waiting or being applied here. */
  private readonly known = new Set<string>();
  /** Devices with replies waiting and none in a batch under way, in arrival order. */
  private readonly ready = new Set<string>();
  /** Devices with replies in a batch under way. */
  private readonly inBatch = new Set<string>();
  private readonly marks: GroupCommit<string, void>;
  private active = 0;
  private started = false;
  private stopped = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> = Promise.resolve();
  private readonly batches = new Set<Promise<void>>();
  /** Keys applied while a sweep's query runs: its answer may still list them as pending. */
  private appliedDuringSweep: Set<string> | undefined;
  private readonly options: ReplyApplierOptions;

  constructor(
    private readonly deps: ReplyApplierDeps,
    options: Partial<ReplyApplierOptions> = {},
  ) {
    this.options = { ...DEFAULT_REPLY_APPLIER_OPTIONS, ...options };
    for (const field of ['concurrency', 'batchSize'] as const) {
      if (!Number.isInteger(this.options[field]) || this.options[field] < 1) throw new RangeError(`replyApplier.${field}: must be an integer of at least 1`);
    }
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
      if (queue) queue.push(reply);
      else this.queues.set(reply.clientId, [reply]);
      if (!this.inBatch.has(reply.clientId)) this.ready.add(reply.clientId);
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

  /** Stops taking work and waits for the batches in flight; what is left stays pending in the store. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.sweepTimer);
    await this.sweeping;
    await Promise.allSettled([...this.batches]);
  }

  private pump(): void {
    while (this.started && !this.stopped && this.active < this.options.concurrency && this.ready.size > 0) {
      const devices: string[] = [];
      for (const clientId of this.ready) {
        if (devices.length === this.options.batchSize) break;
        devices.push(clientId);
      }
      const replies: StoredDeviceReply[] = [];
      for (const clientId of devices) {
        this.ready.delete(clientId);
        this.inBatch.add(clientId);
        const queue = this.queues.get(clientId) ?? [];
        replies.push(...queue.splice(0).sort(receiveOrder));
      }
      this.active++;
      const batch = this.applyBatch(replies).finally(() => {
        this.active--;
        this.batches.delete(batch);
        for (const clientId of devices) {
          this.inBatch.delete(clientId);
          if ((this.queues.get(clientId)?.length ?? 0) > 0) this.ready.add(clientId);
          else this.queues.delete(clientId);
        }
        this.pump();
      });
      this.batches.add(batch);
    }
  }

  /** Applies one batch and marks what it applied; what it could not stays pending for the sweep. */
  private async applyBatch(replies: StoredDeviceReply[]): Promise<void> {
    let failed: Set<string>;
    try {
      const result = await this.deps.apply(replies);
      failed = result.failed;
      if (failed.size > 0) this.deps.logger.warn({ err: result.error, failed: failed.size, replies: replies.length }, 'could not apply some device replies; the sweep will retry them');
    } catch (err) {
      this.deps.logger.warn({ err, replies: replies.length }, 'could not apply device replies; the sweep will retry them');
      failed = new Set(replies.map((r) => r.key));
    }
    try {
      const applied = replies.filter((r) => !failed.has(r.key)).map((r) => r.key);
      if (applied.length > 0) await this.marks.submit(applied);
    } catch (err) {
      // Applied but still listed as pending: the sweep applies them again, which changes nothing.
      this.deps.logger.warn({ err }, 'could not mark device replies applied; the sweep will apply them again');
    } finally {
      // A sweep reading now may list these as pending: the applied ones need nothing more, the
      // failed ones wait for the next sweep.
      for (const reply of replies) {
        this.appliedDuringSweep?.add(reply.key);
        this.known.delete(reply.key);
      }
    }
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
