import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { MongoClient, type Db } from 'mongodb';
import { inject } from 'vitest';
import { freePort, startFerretDb, startTemporal, type ServiceProcess } from '../../devstack/services';

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

/** A client of the shared Temporal server, or of the one at `address` (a file's own server). */
export async function temporalClient(address?: string): Promise<{ client: Client; connection: Connection; close(): Promise<void> }> {
  const { temporalAddress, namespace } = stackEndpoints();
  const connection = await Connection.connect({ address: address ?? temporalAddress });
  const client = new Client({ connection, namespace });
  return { client, connection, close: () => connection.close() };
}

export async function workerConnection(address?: string): Promise<NativeConnection> {
  return NativeConnection.connect({ address: address ?? stackEndpoints().temporalAddress });
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

/**
 * Polls `check` until it says done. Fails when its progress figure has not grown for `stallMs`
 * (a check that throws counts as no progress; its message becomes the detail)
 * (the thing waited for is stuck), or after `timeoutMs` in all: for work whose speed depends on a
 * shared machine's load but which must keep moving (the speed itself is measured in bench/).
 */
export async function waitForProgress(
  check: () => Promise<{ done: boolean; progress: number; detail: string }>,
  options: { stallMs: number; timeoutMs: number; intervalMs?: number; what: string },
): Promise<void> {
  const started = Date.now();
  let best = -Infinity;
  let movedAt = started;
  for (;;) {
    // A check that throws (a query timing out on a loaded machine) counts as no progress.
    const { done, progress, detail } = await check().catch((err: unknown) => ({ done: false, progress: -Infinity, detail: err instanceof Error ? err.message : String(err) }));
    if (done) return;
    const now = Date.now();
    if (progress > best) {
      best = progress;
      movedAt = now;
    }
    if (now - movedAt > options.stallMs) throw new Error(`${options.what}: no progress for ${Math.round(options.stallMs / 1000)} s (${detail})`);
    if (now - started > options.timeoutMs) throw new Error(`${options.what}: not done after ${Math.round(options.timeoutMs / 1000)} s (${detail})`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 1_000));
  }
}

/** A server of a test file's own, which the file may freeze (SIGSTOP) without disturbing other files. */
export interface OwnServer {
  /** host:port (Temporal) or mongodb:// URI (FerretDB). */
  address: string;
  /** SIGSTOP: the process keeps its sockets open and answers nothing, as a hung server does. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
  /** Null while the process runs; how it ended otherwise (a server that dies is a different failure from a slow one). */
  exitStatus(): { code: number | null; signal: string | null } | null;
  /** The last lines of the server's log. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

async function ownServer(start: (workDir: string, port: number) => Promise<ServiceProcess & { address: string }>): Promise<OwnServer> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-own-'));
  const service = await start(workDir, await freePort());
  let frozen = false;
  let exit: { code: number | null; signal: string | null } | null = null;
  service.child.once('exit', (code, sig) => (exit = { code, signal: sig }));
  const signal = (name: NodeJS.Signals): void => {
    service.child.kill(name);
    frozen = name === 'SIGSTOP';
  };
  return {
    address: service.address,
    freeze: () => signal('SIGSTOP'),
    thaw: () => signal('SIGCONT'),
    exitStatus: () => exit,
    logTail: (lines = 20) => {
      try {
        return readFileSync(service.logFile, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
    async stop() {
      if (frozen) signal('SIGCONT');
      await service.stop();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

/** A Temporal dev server for one test file (same binary and settings as the shared one). */
export function ownTemporal(): Promise<OwnServer> {
  return ownServer((workDir, port) =>
    startTemporal({ binary: inject('temporalCliPath'), host: '127.0.0.1', port, namespace: inject('temporalNamespace'), logDir: workDir }),
  );
}

/** A FerretDB for one test file. */
export function ownFerretDb(): Promise<OwnServer> {
  return ownServer(async (workDir, port) => {
    const service = await startFerretDb({ binary: inject('ferretDbPath'), host: '127.0.0.1', port, dataDir: path.join(workDir, 'data'), logDir: workDir });
    return { ...service, address: service.uri };
  });
}
