import { ApplicationFailure } from '@temporalio/activity';
import { EmqxError } from '../emqx';

/**
 * Turns an EMQX error into the Temporal failure the retry policy understands: retryable for
 * 5xx/429/timeouts/connection errors, non-retryable otherwise, with the error class as its `type`.
 * The message is the client's own, which never carries credentials.
 */
export function asActivityFailure(err: unknown): unknown {
  if (err instanceof EmqxError) {
    return err.retryable
      ? ApplicationFailure.retryable(err.message, err.type)
      : ApplicationFailure.nonRetryable(err.message, err.type);
  }
  return err;
}

/** Runs one EMQX step, mapping its errors for Temporal. */
export async function emqxStep<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw asActivityFailure(err);
  }
}

/** Runs `work` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapPooled<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T, index);
    }
  });
  await Promise.all(runners);
  return results;
}
