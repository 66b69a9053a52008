import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureComposeCheck, ensureFerretDb, ensureTemporalCli, ensureTemporalTestServer, installAll } from '../../devstack/binaries';
import { ensureHelm, ensureK8sCheck } from '../../devstack/k8s-tools';
import { freePort, startFerretDb, startTemporal, type ServiceProcess } from '../../devstack/services';

/**
 * Starts the expensive real servers once per test run, on free ports, so tests never depend on a
 * running `npm run dev` or on fixed ports: a Temporal dev server (in memory, headless, with the
 * project's search attributes) and FerretDB (SQLite in a temporary directory); compose-check, Helm
 * and k8s-check for test/deploy and Temporal's time-skipping test server are installed here too. A missing binary is
 * installed, never skipped; a failure here fails the whole run loudly.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalNamespace: string;
    mongoUri: string;
    temporalCliPath: string;
    /** Temporal's time-skipping test server, for test/workflows/*.timeskip.test.ts (test/support/time-skipping.ts). */
    temporalTestServerPath: string;
    composeCheckPath: string;
    helmPath: string;
    k8sCheckPath: string;
    ferretDbPath: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const progress = (message: string): void => console.log(`[test harness] ${message}`);
  const [temporalCli, ferretDb, composeCheck, helm, k8sCheck, temporalTestServer] = await installAll([
    ensureTemporalCli(progress),
    ensureFerretDb(progress),
    ensureComposeCheck(progress),
    ensureHelm(progress),
    ensureK8sCheck(progress),
    ensureTemporalTestServer(progress),
  ]);

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-test-'));
  const host = '127.0.0.1';
  const services: ServiceProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const [temporal, mongo] = await Promise.all([
      startTemporal({ binary: temporalCli, host, port: await freePort(), namespace: 'default', logDir: workDir }),
      startFerretDb({ binary: ferretDb, host, port: await freePort(), dataDir: path.join(workDir, 'ferretdb'), logDir: workDir }),
    ]);
    services.push(temporal, mongo);
    project.provide('temporalAddress', temporal.address);
    project.provide('temporalNamespace', 'default');
    project.provide('mongoUri', mongo.uri);
    project.provide('temporalCliPath', temporalCli);
    project.provide('temporalTestServerPath', temporalTestServer);
    project.provide('composeCheckPath', composeCheck);
    project.provide('helmPath', helm);
    project.provide('k8sCheckPath', k8sCheck);
    project.provide('ferretDbPath', ferretDb);
    progress(`Temporal ${temporal.address}, MongoDB-wire ${mongo.uri}`);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return stopAll;
}
