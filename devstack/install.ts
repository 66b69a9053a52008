import { ensureComposeCheck, ensureFerretDb, ensureTemporalCli, installAll } from './binaries';

/** Installs (or finds) the server binaries and tools the tests need ahead of time: `npx tsx devstack/install.ts`. */
async function main(): Promise<void> {
  const progress = (message: string): void => console.log(`[install] ${message}`);
  const [temporal, ferret, composeCheck] = await installAll([ensureTemporalCli(progress), ensureFerretDb(progress), ensureComposeCheck(progress)]);
  console.log(`[install] temporal: ${temporal}\n[install] ferretdb: ${ferret}\n[install] compose-check: ${composeCheck}`);
}

main().catch((err: unknown) => {
  for (const line of (err instanceof Error ? err.message : String(err)).split('\n')) console.error(`[install] ${line}`);
  process.exit(1);
});
