/**
 * Answering EMQX fast matters more during a storm than signalling fast: events are durable once stored, and
 * EMQX drops what it cannot deliver within its request timeout (`request_ttl`, docs/emqx-setup.md). So while
 * the adapter's own response times climb (the machine is busy: Temporal and the worker are working through
 * the signals), the relay runs fewer signals at once, and more again once answers are quick: additive
 * increase, multiplicative decrease, judged every `windowMs` on the slowest tenth of the answers.
 */
export class SignalThrottle {
  private current: number;
  private samples: number[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: { max: number; min?: number; slowMs?: number; fastMs?: number; windowMs?: number },
    private readonly onChange: (limit: number) => void = () => undefined,
  ) {
    // Slow start: a storm's first burst should not meet 32 signals at once.
    this.current = Math.max(options.min ?? 1, Math.ceil(options.max / 4));
  }

  limit(): number {
    return this.current;
  }

  /** One answer's duration in milliseconds. */
  observe(ms: number): void {
    this.samples.push(ms);
  }

  start(): void {
    this.timer = setInterval(() => this.adjust(), this.options.windowMs ?? 100);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private adjust(): void {
    const samples = this.samples;
    this.samples = [];
    const min = this.options.min ?? 1;
    let next = this.current;
    if (samples.length === 0) next = Math.min(this.options.max, this.current + 2);
    else {
      samples.sort((a, b) => a - b);
      const p90 = samples[Math.floor(samples.length * 0.9)] ?? 0;
      if (p90 > (this.options.slowMs ?? 20)) next = Math.max(min, Math.floor(this.current / 2));
      else if (p90 < (this.options.fastMs ?? 10)) next = Math.min(this.options.max, this.current + 1);
    }
    if (next !== this.current) {
      this.current = next;
      this.onChange(next);
    }
  }
}
