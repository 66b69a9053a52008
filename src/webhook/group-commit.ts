/**
 * Group commit: requests that arrive while a write is in flight are written together in the next
 * one. Under a storm this turns thousands of single-document writes per second into a few dozen
 * bulk writes, and each request still waits for its own events to be durable before it is
 * answered. At most `maxConcurrent` writes run at once, each with at most `maxItems` items.
 *
 * A caller waits at most `deadlineMs` (when given): past it, its items leave the queue if their
 * write has not started (so a hung store does not pile up abandoned work) and it gets a
 * DeadlineExceededError either way.
 */
export class DeadlineExceededError extends Error {
  readonly type = 'DeadlineExceededError';
}

interface Entry<T, R> {
  items: T[];
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export class GroupCommit<T, R> {
  private readonly waiting: Entry<T, R>[] = [];
  private running = 0;

  constructor(
    private readonly write: (items: T[]) => Promise<R>,
    private readonly options: { maxItems: number; maxConcurrent: number; deadlineMs?: number },
  ) {}

  /** Resolves with the result of the write that carried `items`. */
  submit(items: T[]): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const entry: Entry<T, R> = {
        items,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      };
      const deadlineMs = this.options.deadlineMs;
      if (deadlineMs !== undefined) {
        timer = setTimeout(() => {
          const index = this.waiting.indexOf(entry);
          if (index >= 0) this.waiting.splice(index, 1);
          reject(new DeadlineExceededError(`not stored within ${deadlineMs} ms`));
        }, deadlineMs);
      }
      this.waiting.push(entry);
      this.startWrites();
    });
  }

  private startWrites(): void {
    while (this.running < this.options.maxConcurrent && this.waiting.length > 0) {
      const batch: Entry<T, R>[] = [];
      let size = 0;
      while (this.waiting.length > 0 && (batch.length === 0 || size + (this.waiting[0]?.items.length ?? 0) <= this.options.maxItems)) {
        const next = this.waiting.shift() as Entry<T, R>;
        batch.push(next);
        size += next.items.length;
      }
      this.running++;
      void this.write(batch.flatMap((entry) => entry.items))
        .then(
          (result) => batch.forEach((entry) => entry.resolve(result)),
          (err: unknown) => batch.forEach((entry) => entry.reject(err)),
        )
        .finally(() => {
          this.running--;
          this.startWrites();
        });
    }
  }
}
