import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Who may import what (DESIGN.md "Layout"), kept by the linter rather than by memory. ESLint applies
// the last matching block's options of a rule, so each block below repeats the rules it inherits.
const DRIVERS = {
  paths: [
    {
      name: 'better-sqlite3',
      message:
        'SQL stays in the ledger: only src/ledger/sqlite/ opens SQLite. Go through the ledger (src/ledger/index.js).',
    },
    {
      name: 'pg',
      message:
        'SQL stays in the ledger: only src/ledger/postgres/ opens PostgreSQL. Go through the ledger (src/ledger/index.js).',
    },
  ],
};
const HARNESS = {
  ...DRIVERS,
  patterns: [
    {
      regex: '(^|/)(ledger|compose)/',
      message:
        'The harness records and replays any MCP server: it imports neither the ledger nor compose (src/harness keeps its own helpers).',
    },
  ],
};
const PROXY = {
  ...DRIVERS,
  patterns: [
    {
      regex: '(^|/)ledger/(?!index\\.js$)',
      message:
        "The proxy is an executor over the ledger's ports: import src/ledger/index.js, never its stores, SQL or internals.",
    },
    {
      regex: '(^|/)engine/',
      message: 'The proxy is its own executor over the worker port: it does not import the engine.',
    },
  ],
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'runledger-out/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // stdout is the stdio protocol channel: server code logs through src/log.ts to stderr.
    files: ['src/**/*.ts', 'tools/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
  {
    // A source file long enough to need a map has more than one job: split it along its seams.
    files: ['src/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 450, skipBlankLines: false, skipComments: false }] },
  },
  {
    // bench/ baselines and test helpers may open the databases themselves; the product may not.
    files: ['src/**/*.ts', 'tools/**/*.ts'],
    ignores: ['src/ledger/sqlite/**', 'src/ledger/postgres/**'],
    rules: { 'no-restricted-imports': ['error', DRIVERS] },
  },
  { files: ['src/harness/**/*.ts'], rules: { 'no-restricted-imports': ['error', HARNESS] } },
  { files: ['src/proxy/**/*.ts'], rules: { 'no-restricted-imports': ['error', PROXY] } },
  {
    files: ['test/**/*.{ts,mjs}'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
