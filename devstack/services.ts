import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { PortInUseError } from './broker/listeners';

/**
 * Starting and stopping the stack's server processes (Temporal dev server, FerretDB), shared by
 * `npm run dev` and the test harness so both run the same binaries the same way.
 */

export const SEARCH_ATTRIBUTES = {
  DeviceId: 'Keyword',
  CampaignId: 'Keyword',
  DeviceOperation: 'Keyword',
  Presence: 'Keyword',
  AlarmLevel: 'Int',
} as const;

/** Ports something else already listens on, each with the variable that moves it. */
export class PortsInUseError extends Error {
  readonly code = 'EADDRINUSE';
  constructor(readonly ports: PortInUseError[]) {
    const list = ports.map((p) => `${p.port} (${p.variable})`).join(', ');
    super(
      ports.length === 1
        ? `port ${list} is already in use; set ${ports[0]?.variable} to use another port`
        : `ports ${list} are already in use; set those variables to use other ports`,
    );
    this.name = 'PortsInUseError';
  }
}

/** Checks every port before failing, so one run names all the ports in use, not only the first. */
export async function assertPortsFree(host: string, ports: { port: number; variable: string }[]): Promise<void> {
  const results = await Promise.allSettled(ports.map(({ port, variable }) => assertPortFree(host, port, variable)));
  const busy = results.flatMap((r) => (r.status === 'rejected' && r.reason instanceof PortInUseError ? [r.reason] : []));
  const other = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof PortInUseError));
  if (other) throw other.reason;
  if (busy.length > 0) throw new PortsInUseError(busy);
}

async function assertPortFree(host: string, port: number, variable: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' || err.code === 'EACCES' ? new PortInUseError(port, variable) : err),
    );
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Sends SIGTERM, then SIGKILL after a grace period; resolves when the process has exited. */
  stop(): Promise<void>;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, isDead: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isDead()) return false;
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Spawns a server, sends its output to a log file, and waits until `ready` says so. */
export async function startProcess(spec: {
  name: string;
  command: string;
  args: string[];
  logDir: string;
  ready: () => Promise<boolean>;
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}): Promise<ServiceProcess> {
  mkdirSync(spec.logDir, { recursive: true });
  const logFile = path.join(spec.logDir, `${spec.name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(spec.command, spec.args, { env: spec.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let exited = false;
  const exitPromise = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.once('error', () => {
    exited = true;
  });
  // If this process dies without stopping its children (an uncaught error), take them along.
  const killOnExit = (): void => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  void exitPromise.then(() => process.removeListener('exit', killOnExit));

  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exitPromise;
    clearTimeout(timer);
  };

  const ok = await pollUntil(spec.ready, spec.readyTimeoutMs ?? 30_000, () => exited);
  if (!ok) {
    await stop();
    throw new Error(`${spec.name} did not become ready (log ${logFile}):\n${tail(logFile)}`);
  }
  return { name: spec.name, child, logFile, stop };
}

export async function startTemporal(opts: {
  binary: string;
  host: string;
  port: number;
  uiPort?: number;
  dbFile?: string;
  namespace: string;
  logDir: string;
  codecEndpoint?: string;
}): Promise<ServiceProcess & { address: string }> {
  const address = `${opts.host}:${opts.port}`;
  const args = [
    'server', 'start-dev',
    '--ip', opts.host,
    '--port', String(opts.port),
    '--namespace', opts.namespace,
    '--log-level', 'warn',
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
    '--dynamic-config-value', 'frontend.workerVersioningDataAPIs=true',
  ];
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  if (opts.uiPort) args.push('--ui-ip', opts.host, '--ui-port', String(opts.uiPort));
  else args.push('--headless');
  if (opts.dbFile) args.push('--db-filename', opts.dbFile);
  if (opts.codecEndpoint) args.push('--ui-codec-endpoint', opts.codecEndpoint);

  const service = await startProcess({
    name: 'temporal',
    command: opts.binary,
    args,
    logDir: opts.logDir,
    readyTimeoutMs: 60_000,
    ready: () => temporalReady(address, opts.namespace),
  });
  return { ...service, address };
}

async function temporalReady(address: string, namespace: string): Promise<boolean> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    await connection.workflowService.describeNamespace({ namespace });
    return true;
  } finally {
    await connection.close();
  }
}

export async function startFerretDb(opts: {
  binary: string;
  host: string;
  port: number;
  dataDir: string;
  logDir: string;
}): Promise<ServiceProcess & { uri: string }> {
  const uri = `mongodb://${opts.host}:${opts.port}`;
  mkdirSync(opts.dataDir, { recursive: true });
  const service = await startProcess({
    name: 'ferretdb',
    command: opts.binary,
    args: ['--listen-addr', `${opts.host}:${opts.port}`, '--data-dir', opts.dataDir, '--log-level', 'warn'],
    logDir: opts.logDir,
    ready: () => mongoReady(uri),
  });
  return { ...service, uri };
}

export async function mongoReady(uri: string): Promise<boolean> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 1_000 });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return true;
  } finally {
    await client.close();
  }
}
