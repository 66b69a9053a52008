import { benchCampaign } from './campaign';
import { benchCliStartup } from './cli-startup';
import { benchPresence } from './presence';
import { benchProvision } from './provision';

/**
 * `npm run bench [name...]`: runs the benchmarks (default: all) and prints one JSON line each.
 * Benchmarks are not tests: they report figures; targets are recorded next to the figures.
 */
const benchmarks: Record<string, () => Promise<Record<string, unknown>>> = {
  provision: benchProvision,
  presence: benchPresence,
  campaign: benchCampaign,
  'cli-startup': benchCliStartup,
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const selected = names.length > 0 ? names : Object.keys(benchmarks);
  for (const name of selected) {
    const bench = benchmarks[name];
    if (!bench) throw new Error(`unknown benchmark "${name}" (have: ${Object.keys(benchmarks).join(', ')})`);
    console.log(JSON.stringify(await bench()));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
