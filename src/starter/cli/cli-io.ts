import { createConnection } from 'node:net';
import { parseDurationMs } from '../../config';
import { InputError } from '../../domain/input-error';
import type { DeviceOps } from '../client/index';

/** What a CLI command may touch: output streams, standard input, and a way to connect. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
  connect: () => Promise<{ ops: DeviceOps; close(): Promise<void> }>;
  /** Whether stdout is a terminal: live redraws only then, plain lines otherwise. */
  isTTY?: boolean;
}

/** Prints JSON with `--json`, the human form otherwise. */
export function printResult(io: CliIo, json: boolean | undefined, value: unknown, human: () => string): void {
  io.stdout(`${json ? JSON.stringify(value, null, 2) : human()}\n`);
}

/** Connects, runs one command's work, and always closes the connections. */
export async function withOps<T>(io: CliIo, work: (ops: DeviceOps) => Promise<T>): Promise<T> {
  const connected = await io.connect();
  try {
    return await work(connected.ops);
  } finally {
    await connected.close();
  }
}

/** Commander option parser for repeatable flags. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A duration flag (`30s`, `10m`, `2h`, `1d`, or milliseconds); bad input names the flag. */
export function durationFlag(text: string, flag: string): number {
  try {
    return parseDurationMs(text);
  } catch {
    throw new InputError([`${flag}: "${text}" must be a duration such as 30s, 10m, 2h, 1d`]);
  }
}

/** A service the CLI needs did not answer; the message names each address, its variable and a hint. */
export class ServiceUnreachableError extends Error {
  readonly type = 'ServiceUnreachableError';
  constructor(message: string) {
    super(message);
    this.name = 'ServiceUnreachableError';
  }
}

/** How long the CLI waits for a TCP connection before saying a service is unreachable. */
export const REACH_TIMEOUT_MS = 2_000;

/** Opens (and closes) one TCP connection; resolves with why it failed, or undefined. */
function tcpProblem(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (problem: string | undefined): void => {
      socket.destroy();
      resolve(problem);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs / 1000}s`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message)));
  });
}

/** host:port pairs of a mongodb:// URI (credentials never leave this function); none for +srv. */
function mongoHosts(uri: string): { host: string; port: number }[] {
  const match = /^mongodb:\/\/(?:[^@/]*@)?([^/?]+)/.exec(uri);
  if (!match?.[1]) return [];
  return match[1].split(',').map((entry) => {
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) return { host: bracketed[1] as string, port: Number(bracketed[2] ?? 27017) };
    const [host = '', port] = entry.split(':');
    return { host, port: Number(port ?? 27017) };
  });
}

/**
 * Checks, within about REACH_TIMEOUT_MS and all at once, that Temporal and MongoDB accept
 * connections, so a command against a stack that is not running fails at once and says what it
 * tried, instead of the clients' own deadlines (Temporal's is 10 s) and a message naming nothing.
 */
export async function assertReachable(targets: { temporalAddress: string; mongoUri?: string }, timeoutMs = REACH_TIMEOUT_MS): Promise<void> {
  const [temporalHost = '', temporalPort] = splitHostPort(targets.temporalAddress);
  const mongo = targets.mongoUri === undefined ? [] : mongoHosts(targets.mongoUri);
  const [temporalProblem, mongoProblems] = await Promise.all([
    tcpProblem(temporalHost, Number(temporalPort), timeoutMs),
    Promise.all(mongo.map((h) => tcpProblem(h.host, h.port, timeoutMs))),
  ]);
  const problems: string[] = [];
  if (temporalProblem) problems.push(`cannot reach Temporal at ${targets.temporalAddress} (TEMPORAL_ADDRESS): ${temporalProblem}`);
  // Any member of a replica set answering is enough.
  if (mongo.length > 0 && mongoProblems.every(Boolean)) {
    problems.push(`cannot reach MongoDB at ${mongo.map((h) => `${h.host}:${h.port}`).join(',')} (MONGODB_URI): ${mongoProblems[0] ?? ''}`);
  }
  if (problems.length > 0) throw new ServiceUnreachableError(`${problems.join('; ')}. ${STACK_HINT}`);
}

/** What to try when a service does not answer. */
export const STACK_HINT = 'Is the local stack running (npm run dev)? Otherwise set the variable named to where the service runs.';

function splitHostPort(address: string): [string, string] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), address.slice(colon + 1)];
}
