import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/config';
import { runCli, type CliIo } from '../../src/starter/cli/cli';
import type { DeviceOps } from '../../src/starter/client/index';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Whether the command got as far as connecting: bad input must be rejected before that. */
  connected: boolean;
}

/** Runs the device-ops CLI in-process against a test system's client library. */
export async function runCliWith(ops: DeviceOps, args: string[], stdin = '', options: { isTTY?: boolean } = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  let connected = false;
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    readStdin: () => Promise.resolve(stdin),
    isTTY: options.isTTY ?? false,
    connect: () => {
      connected = true;
      return Promise.resolve({ ops, close: () => Promise.resolve() });
    },
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr, connected };
}

export interface BinaryRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Bytes the reader took before it closed the pipe (all of stdout unless closeAfterBytes). */
  bytesRead: number;
  ms: number;
}

const BIN = path.join(projectRoot(), 'bin', 'device-ops.cjs');

/** The built CLI must be at least as new as its sources: the binary runs dist/, not src/. */
function assertBuilt(): void {
  const built = path.join(projectRoot(), 'dist', 'src', 'starter', 'cli', 'main.js');
  if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build`);
  const builtAt = statSync(built).mtimeMs;
  const stale = ['cli.ts', 'cli-io.ts', 'main.ts', 'campaign-cli.ts', 'presence-cli.ts']
    .map((f) => path.join(projectRoot(), 'src', 'starter', 'cli', f))
    .filter((f) => existsSync(f) && statSync(f).mtimeMs > builtAt);
  if (stale.length > 0) throw new Error(`dist/ is older than ${stale.map((f) => path.basename(f)).join(', ')}: run npm run build`);
}

/** The environment the real binary reads for a test system (and no `.stack-state/env`). */
export function binaryEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, DEVICE_OPS_ENV_FILE: path.join(projectRoot(), 'no-such-env-file'), ...overrides };
}

/**
 * Runs the real `device-ops` binary (bin/device-ops.cjs, the built code) with its stdout on a pipe.
 * With `closeAfterBytes`, the reader closes its end after that many bytes, as `| head` does.
 */
export function runBinary(args: string[], options: { env: NodeJS.ProcessEnv; stdin?: string; closeAfterBytes?: number }): Promise<BinaryRun> {
  assertBuilt();
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: options.env });
    const chunks: Buffer[] = [];
    let bytesRead = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      chunks.push(d);
      bytesRead += d.length;
      if (options.closeAfterBytes !== undefined && bytesRead >= options.closeAfterBytes) child.stdout.destroy();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(chunks).toString(), stderr, bytesRead, ms: Date.now() - started }));
    child.stdin.end(options.stdin ?? '');
  });
}
