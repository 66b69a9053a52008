import { benchBrokerBulk } from './broker-bulk';
import { benchCampaign } from './campaign';
import { benchCliStartup } from './cli-startup';
import { benchIngest } from './ingest';
import { benchJobs } from './jobs';
import { benchPresence } from './presence';
import { benchProvision } from './provision';
import { benchReplicas } from './replicas';
import { benchSoak } from './soak';

/**
 * `npm run bench [name...]`: runs the benchmarks (default: all) and prints one JSON line each.
 * Benchmarks are not tests: they report figures; targets are recorded next to the figures.
 */
const benchmarks: Record<string, () => Promise<Record<string, unknown>>> = {
  provision: benchProvision,
  presence: benchPresence,
  ingest: benchIngest,
  campaign: benchCampaign,
  soak: benchSoak,
  replicas: benchReplicas,
  'cli-startup': benchCliStartup,
  'broker-bulk': benchBrokerBulk,
  jobs: benchJobs,
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  // The soak runs for half an hour, replicas starts two stacks, jobs connects 10,000 agents: only when named.
  const selected = names.length > 0 ? names : Object.keys(benchmarks).filter((name) => !['soak', 'replicas', 'jobs'].includes(name));
  for (const name of selected) {
    const bench = benchmarks[name];
    if (!bench) throw new Error(`unknown benchmark "${name}" (have: ${Object.keys(benchmarks).join(', ')})`);
    // The runtime is part of every figure: the same benchmark differs between Node releases.
    console.log(JSON.stringify({ benchmark: name, node: process.version, ...(await bench()) }));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
