import { parseDurationMs } from '../config';
import { InputError } from '../domain/input-error';
import type { DeviceOps } from './client';

/** What a CLI command may touch: output streams, standard input, and a way to connect. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
  connect: () => Promise<{ ops: DeviceOps; close(): Promise<void> }>;
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
