/**
 * Group commit: requests that arrive while a write is in flight are written together in the next
 * one. Under a storm this turns thousands of single-document writes per second into a few dozen
 * bulk writes, and each request still waits for its own events to be durable before it is
 * answered. At most `maxConcurrent` writes run at once, each with at most `maxItems` items.
 */
export class GroupCommit<T, R> {
  private readonly waiting: { items: T[]; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = 0;

  constructor(
    private readonly write: (items: T[]) => Promise<R>,
    private readonly options: { maxItems: number; maxConcurrent: number },
  ) {}

  /** Resolves with the result of the write that carried `items`. */
  submit(items: T[]): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ items, resolve, reject });
      this.startWrites();
    });
  }

  private startWrites(): void {
    while (this.running < this.options.maxConcurrent && this.waiting.length > 0) {
      const batch: typeof this.waiting = [];
      let size = 0;
      while (this.waiting.length > 0 && (batch.length === 0 || size + (this.waiting[0]?.items.length ?? 0) <= this.options.maxItems)) {
        const next = this.waiting.shift() as (typeof this.waiting)[number];
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
