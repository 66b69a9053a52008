import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { MongoClient, type Db } from 'mongodb';
import { inject } from 'vitest';

/**
 * The one test harness. The servers come from the global setup (test/harness/global-setup.ts);
 * each test file gets its own database and task queue so files can run side by side.
 */

export function stackEndpoints(): { temporalAddress: string; namespace: string; mongoUri: string } {
  return { temporalAddress: inject('temporalAddress'), namespace: inject('temporalNamespace'), mongoUri: inject('mongoUri') };
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

/** A fresh database on the shared FerretDB, dropped by `close()`. */
export async function freshDatabase(prefix = 'test'): Promise<{ client: MongoClient; db: Db; name: string; close(): Promise<void> }> {
  const client = new MongoClient(stackEndpoints().mongoUri);
  await client.connect();
  const name = uniqueName(prefix);
  const db = client.db(name);
  return {
    client,
    db,
    name,
    async close() {
      await db.dropDatabase().catch(() => undefined);
      await client.close();
    },
  };
}

export async function temporalClient(): Promise<{ client: Client; connection: Connection; close(): Promise<void> }> {
  const { temporalAddress, namespace } = stackEndpoints();
  const connection = await Connection.connect({ address: temporalAddress });
  const client = new Client({ connection, namespace });
  return { client, connection, close: () => connection.close() };
}

export async function workerConnection(): Promise<NativeConnection> {
  return NativeConnection.connect({ address: stackEndpoints().temporalAddress });
}

/** Polls `check` until it returns a truthy value or the deadline passes; never a fixed sleep. */
export async function waitFor<T>(check: () => Promise<T> | T, options: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out waiting for ${options.what ?? 'condition'}${detail}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
}
