import { runCli, type CliIo } from '../../src/starter/cli';
import type { DeviceOps } from '../../src/starter/client';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Whether the command got as far as connecting: bad input must be rejected before that. */
  connected: boolean;
}

/** Runs the device-ops CLI in-process against a test system's client library. */
export async function runCliWith(ops: DeviceOps, args: string[], stdin = ''): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  let connected = false;
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    readStdin: () => Promise.resolve(stdin),
    connect: () => {
      connected = true;
      return Promise.resolve({ ops, close: () => Promise.resolve() });
    },
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr, connected };
}
