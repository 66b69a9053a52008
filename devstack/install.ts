import { ensureFerretDb, ensureTemporalCli } from './binaries';

/** Installs (or finds) the server binaries ahead of time: `npx tsx devstack/install.ts`. */
async function main(): Promise<void> {
  const progress = (message: string): void => console.log(`[install] ${message}`);
  const [temporal, ferret] = await Promise.all([ensureTemporalCli(progress), ensureFerretDb(progress)]);
  console.log(`[install] temporal: ${temporal}\n[install] ferretdb: ${ferret}`);
}

main().catch((err: unknown) => {
  console.error(`[install] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
