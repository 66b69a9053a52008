import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config';

/**
 * The layer rule (docs/architecture.md) as lint enforces it: each probe is linted as if it were the
 * named file, with the project's eslint.config.mjs, and must break exactly the import rules named.
 */
const eslint = new ESLint({ cwd: projectRoot() });

async function importProblems(filePath: string, code: string, rule = 'no-restricted-imports'): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId === rule).map((m) => m.message);
}

// The first lint builds the TypeScript program for type-aware rules: minutes on a busy machine.
describe('layer rule', { timeout: 300_000 }, () => {
  it('keeps workflow code free of I/O, zod, Node built-ins, the client and activity values', async () => {
    const problems = await importProblems(
      'src/workflows/stats.ts',
      [
        "import { readFileSync } from 'node:fs';",
        "import { z } from 'zod';",
        "import { History } from '../store';",
        "import { createStatsActivities } from '../activities/stats';",
        "import { DeviceOps } from '../starter/client';",
        "import { ClientId } from '../domain/schemas/device';",
        "import type { Activities } from '../activities';",
        "import type { AclRule } from '../domain/schemas/device';",
        "import { presenceQuery } from '../contracts/presence';",
        'export const probe = [readFileSync, z, History, createStatsActivities, DeviceOps, ClientId, presenceQuery];',
        'export type Probe = [Activities, AclRule];',
      ].join('\n'),
    );
    expect(problems).toHaveLength(6);
    expect(problems.join('\n')).toMatch(/node:fs/);
    expect(problems.join('\n')).toMatch(/'zod'/);
    expect(problems.join('\n')).toMatch(/'\.\.\/store'/);
    expect(problems.join('\n')).toMatch(/'\.\.\/activities\/stats'/);
    expect(problems.join('\n')).toMatch(/'\.\.\/starter\/client'/);
    expect(problems.join('\n')).toMatch(/'\.\.\/domain\/schemas\/device'/);
  });

  it('keeps domain rules below contracts and workflows', async () => {
    const problems = await importProblems(
      'src/domain/presence.ts',
      ["import { presenceQuery } from '../contracts/presence';", "import { devicePresence } from '../workflows/presence';", 'export const probe = [presenceQuery, devicePresence];'].join('\n'),
    );
    expect(problems).toHaveLength(2);
  });

  it('keeps the worker side off the client library and workflow code, but allows `typeof` workflow imports', async () => {
    const problems = await importProblems(
      'src/activities/stats.ts',
      [
        "import { DeviceOps } from '../starter/client';",
        "import { devicePresence } from '../workflows/presence';",
        "import type { provisionDevice } from '../workflows/device-admin';",
        'export const probe = [DeviceOps, devicePresence];',
        'export type Probe = typeof provisionDevice;',
      ].join('\n'),
    );
    expect(problems).toHaveLength(2);
    expect(await importProblems('src/webhook/adapter.ts', "import { runCli } from '../starter/cli/cli';\nexport const probe = runCli;")).toHaveLength(1);
  });

  it('finds an import cycle', async () => {
    // src/store/index.ts imports ./event-inbox; an event inbox that imported the store's index back would close a cycle.
    const problems = await importProblems('src/store/event-inbox.ts', "import { History } from './index';\nexport const probe = History;", 'import-x/no-cycle');
    expect(problems).toEqual(['Dependency cycle detected']);
  });
});
