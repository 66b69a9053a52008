import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../src/config';
import { round } from './cpu';
import { percentile, startBenchStack } from './stack';

/**
 * bench/cli-startup: how long one `device-ops` call takes, from process start to exit, for
 * `--help` (no connection), `history <device>` and `status <device>` against a running stack; through node directly
 * (`node dist/src/starter/cli/main.js`) and through the bin as a shell runs it from the PATH
 * (bin/device-ops, its `#!/usr/bin/env node` line). Cold: the first run with an empty compile cache
 * (Node 22+ caches compiled code; on Node 20 cold and warm differ only by the OS file cache);
 * warm: the median of BENCH_CLI_RUNS later runs. Needs `npm run build`.
 */
export async function benchCliStartup(): Promise<Record<string, unknown>> {
  const runs = Number(process.env.BENCH_CLI_RUNS ?? 5);
  const root = projectRoot();
  const stack = await startBenchStack();
  try {
    await stack.ops.provision({ clientId: 'cli-bench', password: 'cli-bench-password', acl: [], subscriptions: [] });
    const env = { ...process.env, ...stack.env, DEVICE_OPS_ENV_FILE: path.join(root, 'no-such-env-file') };
    const launchers = {
      node: [process.execPath, path.join(root, 'dist', 'src', 'starter', 'cli', 'main.js')],
      bin: [path.join(root, 'bin', 'device-ops')],
    } as const;
    // status asks EMQX, MongoDB and the device's workflow; history only MongoDB (start-up plus one query).
    const commands = { help: ['--help'], history: ['history', 'cli-bench', '--json'], status: ['status', 'cli-bench', '--json'] } as const;
    const figures: Record<string, Record<string, { coldMs: number; warmMs: number }>> = {};
    for (const [commandName, args] of Object.entries(commands)) {
      figures[commandName] = {};
      for (const [launcherName, [command, ...prefix]] of Object.entries(launchers)) {
        const cache = mkdtempSync(path.join(os.tmpdir(), 'device-ops-compile-cache-'));
        // Asynchronous: the stack's broker runs in this process and must keep answering.
        const once = (): Promise<number> =>
          new Promise((resolve, reject) => {
            const started = performance.now();
            const child = spawn(command, [...prefix, ...args], { env: { ...env, NODE_COMPILE_CACHE: cache }, stdio: ['ignore', 'ignore', 'pipe'] });
            let stderr = '';
            child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            child.on('error', reject);
            child.on('close', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${launcherName} ${args.join(' ')} exited ${code}: ${stderr}`))));
          });
        const coldMs = await once();
        const warm: number[] = [];
        for (let i = 0; i < runs; i += 1) warm.push(await once());
        warm.sort((a, b) => a - b);
        figures[commandName][launcherName] = { coldMs: round(coldMs), warmMs: round(percentile(warm, 50)) };
      }
    }
    return { benchmark: 'cli-startup', node: process.version, runs, ...figures };
  } finally {
    await stack.close();
  }
}
