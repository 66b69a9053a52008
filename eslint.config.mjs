// @ts-check
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

/*
 * The layer rule (README.md, docs/architecture.md): domain -> contracts -> workflows;
 * emqx / store -> temporal -> activities -> processes (worker, webhook adapter, codec server,
 * starter). Imports point down only; each block below forbids the upward ones for its folders.
 * Type-only imports of workflow functions and activity interfaces stay allowed: a client names a
 * workflow by `typeof fn`, a workflow proxies `Activities`, and neither loads the other's code.
 */
const workflowsAsValues = {
  group: ['**/workflows', '**/workflows/*'],
  allowTypeImports: true,
  message: 'Start workflows by type name with a `typeof fn` type import; import messages and shapes from src/contracts.',
};
const starter = { group: ['**/starter', '**/starter/**'], message: 'The client library and the CLI sit on top: nothing below them imports src/starter.' };
const processes = { group: ['**/webhook/*', '**/worker', '**/codec/main', '**/codec/server'], message: 'Processes sit on top of the layers; share code through a lower layer.' };
const activitiesAsValues = {
  group: ['**/activities', '**/activities/*'],
  allowTypeImports: true,
  message: 'Only activity types (for proxyActivities) may be imported here.',
};
/** Workflow-safe code (src/domain, src/contracts, src/workflows) runs in Temporal's deterministic sandbox. */
const workflowSafe = (message) => [
  ...nodeBuiltins.map((name) => ({ name, message: `${message} must not import Node built-ins.` })),
  { name: 'zod', allowTypeImports: true, message: `${message} must not load zod (schemas live in src/domain/schemas).` },
];
const workflowSafePatterns = [
  { group: ['undici', 'mongodb', 'mqtt', 'pino', 'fastify', 'commander', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'], message: 'Workflow-safe code does no I/O.' },
  { group: ['**/emqx', '**/emqx/*', '**/store', '**/store/*', '**/temporal/*', '**/http/*', '**/config'], message: 'Workflow-safe code does no I/O.' },
  { group: ['**/schemas/*'], allowTypeImports: true, message: 'Zod schemas are not workflow-safe: import their types only.' },
  activitiesAsValues,
  starter,
  processes,
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.stack-state/**', 'coverage/**', 'bin/**', '.scratch/**', 'eslint.config.mjs', '**/*.cjs'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // devstack/node-runtime.mjs is plain JavaScript (it runs before `npm ci`), outside tsconfig.json.
        projectService: { allowDefaultProject: ['devstack/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
    },
  },
  {
    // Tests read JSON printed by the CLI and posted by EMQX: untyped by nature, checked by assertions.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },

  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // The cycle check reads each imported module: it must know .ts files and how to parse them.
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'], extensionAlias: { '.js': ['.ts', '.js'] } })],
    },
    rules: { 'import-x/no-cycle': 'error' },
  },
  {
    // Processes and the client-side layers under them: nothing imports the client library or the CLI.
    files: ['src/activities/**/*.ts', 'src/webhook/**/*.ts', 'src/codec/**/*.ts', 'src/worker.ts', 'src/bundle.ts', 'src/main.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [starter, workflowsAsValues] }] },
  },
  {
    files: ['src/temporal/**/*.ts', 'src/store/**/*.ts', 'src/emqx/**/*.ts', 'src/http/**/*.ts', 'src/domain/schemas/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [starter, processes, activitiesAsValues, workflowsAsValues] }] },
  },
  {
    files: ['src/starter/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [processes, workflowsAsValues] }] },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: workflowSafe('Workflow code'), patterns: workflowSafePatterns }] },
  },
  {
    files: ['src/contracts/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: workflowSafe('A contract'), patterns: [...workflowSafePatterns, { group: ['**/workflows', '**/workflows/*'], message: 'Contracts sit below workflows.' }] },
      ],
    },
  },
  {
    files: ['src/domain/**/*.ts'],
    ignores: ['src/domain/schemas/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: workflowSafe('Domain code'),
          patterns: [...workflowSafePatterns, { group: ['**/workflows', '**/workflows/*', '**/contracts', '**/contracts/*'], message: 'Domain rules sit below contracts and workflows.' }],
        },
      ],
    },
  },
);
