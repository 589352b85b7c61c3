import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
    files: ['test/**/*.{ts,mjs}'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
