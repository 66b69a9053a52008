import { z } from 'zod';

/**
 * Fault injection for the dev broker: a fraction of REST calls fail with 503, REST calls get extra latency,
 * webhook deliveries are dropped, duplicated or reordered. EMQX itself does all of these in production
 * (webhook delivery is unordered, at-least-once and lossy: https://github.com/emqx/emqx/issues/12954,
 * docs/emqx-setup.md), so the project's code must survive them; this makes it testable.
 */
export interface FaultConfig {
  /** 0..1 fraction of REST calls (except /status and the fault endpoint) answered 503. */
  restFailureRate: number;
  /** Added delay per REST call, before it is handled. */
  restLatencyMs: number;
  /**
   * Added delay per REST call after it was handled, before the answer goes out: a client that gives
   * up waiting sees a timeout for a request the broker applied (an EMQX under load, a lost answer).
   */
  restAnswerDelayMs: number;
  /** 0..1 fraction of webhook deliveries silently dropped (counted). */
  webhookDropRate: number;
  /** 0..1 fraction of webhook deliveries sent twice. */
  webhookDuplicateRate: number;
  /** Deliver queued events in shuffled order within each in-flight window. */
  webhookReorder: boolean;
}

export const NO_FAULTS: Readonly<FaultConfig> = Object.freeze({
  restFailureRate: 0,
  restLatencyMs: 0,
  restAnswerDelayMs: 0,
  webhookDropRate: 0,
  webhookDuplicateRate: 0,
  webhookReorder: false,
});

const rate = z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1');

/** A partial update, as accepted by `PUT /devstack/faults` and `faults.set()`. */
export const FaultPatch = z
  .object({
    restFailureRate: rate,
    restLatencyMs: z.number().int('must be an integer').min(0).max(600_000),
    restAnswerDelayMs: z.number().int('must be an integer').min(0).max(600_000),
    webhookDropRate: rate,
    webhookDuplicateRate: rate,
    webhookReorder: z.boolean(),
  })
  .partial()
  .strict();
export type FaultPatch = z.infer<typeof FaultPatch>;

/** The current fault settings of one running broker. */
export class FaultSwitchboard {
  private current: FaultConfig;

  constructor(
    private readonly initial: Partial<FaultConfig> = {},
    private readonly random: () => number = Math.random,
  ) {
    this.current = { ...NO_FAULTS, ...FaultPatch.parse(initial) };
  }

  get(): FaultConfig {
    return { ...this.current };
  }

  set(patch: Partial<FaultConfig>): void {
    this.current = { ...this.current, ...FaultPatch.parse(patch) };
  }

  /** Back to the settings the broker started with. */
  reset(): void {
    this.current = { ...NO_FAULTS, ...FaultPatch.parse(this.initial) };
  }

  shouldFailRestCall(): boolean {
    return this.roll(this.current.restFailureRate);
  }

  shouldDropWebhook(): boolean {
    return this.roll(this.current.webhookDropRate);
  }

  shouldDuplicateWebhook(): boolean {
    return this.roll(this.current.webhookDuplicateRate);
  }

  /** Fisher-Yates in place, with the switchboard's random source (so tests can fix it). */
  shuffle<T>(items: T[]): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
  }

  private roll(probability: number): boolean {
    return probability > 0 && this.random() < probability;
  }
}

const ENV_VARIABLES = {
  restFailureRate: 'DEVSTACK_FAULT_REST_FAILURE_RATE',
  restLatencyMs: 'DEVSTACK_FAULT_REST_LATENCY_MS',
  restAnswerDelayMs: 'DEVSTACK_FAULT_REST_ANSWER_DELAY_MS',
  webhookDropRate: 'DEVSTACK_FAULT_WEBHOOK_DROP_RATE',
  webhookDuplicateRate: 'DEVSTACK_FAULT_WEBHOOK_DUPLICATE_RATE',
  webhookReorder: 'DEVSTACK_FAULT_WEBHOOK_REORDER',
} as const satisfies Record<keyof FaultConfig, string>;

const envNumber = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?$/, 'must be a non-negative number')
  .transform(Number);
const envBoolean = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const envFields = {
  restFailureRate: envNumber.pipe(rate),
  restLatencyMs: envNumber.pipe(z.number().int('must be an integer').max(600_000)),
  restAnswerDelayMs: envNumber.pipe(z.number().int('must be an integer').max(600_000)),
  webhookDropRate: envNumber.pipe(rate),
  webhookDuplicateRate: envNumber.pipe(rate),
  webhookReorder: envBoolean,
};

/**
 * Reads the `DEVSTACK_FAULT_*` variables; a bad value throws an error naming the variable and the
 * reason (not the value, following the project's rule for configuration errors).
 */
export function faultsFromEnv(env: NodeJS.ProcessEnv): Partial<FaultConfig> {
  const faults: Partial<FaultConfig> = {};
  const problems: string[] = [];
  for (const key of Object.keys(ENV_VARIABLES) as (keyof FaultConfig)[]) {
    const variable = ENV_VARIABLES[key];
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    const parsed = envFields[key].safeParse(raw);
    if (parsed.success) {
      (faults as Record<string, unknown>)[key] = parsed.data;
    } else {
      problems.push(`${variable}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
    }
  }
  if (problems.length > 0) throw new Error(`invalid fault settings: ${problems.join(', ')}`);
  return faults;
}
