import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { failureConverterPath } from './codec/data-converter';
import { DEFAULT_BUNDLE_PATH, workflowsPath } from './worker';

/**
 * Prebuilds the workflow bundle for production (`npm run build` runs it): the worker then loads
 * dist/workflow-bundle.js instead of running webpack at every start. The bundle must be built with
 * the same @temporalio/worker version that runs it (one lockfile guarantees that).
 */
async function main(): Promise<void> {
  const out = process.argv[2] ?? DEFAULT_BUNDLE_PATH;
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), failureConverterPath: failureConverterPath() });
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, code);
  console.log(`workflow bundle written to ${out} (${(code.length / 1024).toFixed(0)} KiB)`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
