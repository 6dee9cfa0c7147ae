// Lint: typescript-eslint's recommended rules, plus the layering of docs/architecture.md ("Layout") enforced as imports.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const restrict = (patterns, message) => ['error', { patterns: [{ group: patterns, message }] }]

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.praxis/**', 'test/.tmp-*/**', 'examples/.layer-*/**', 'bench/.tmp-*/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['sdk/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(['../platform/*', '../../platform/*', 'node:*', 'pg', 'fastify', 'graphile-worker'], 'sdk/ runs inside the rules sandbox: it imports nothing of platform/ and nothing Node-only') },
  },
  {
    files: ['platform/store/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(['../queue/*', '../engine/*', '../pools/*', '../api/*', '../cli/*'], 'imports flow cli → api, pools → engine → queue → store') },
  },
  {
    files: ['platform/engine/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(['../pools/*', '../api/*', '../cli/*'], 'the engine never imports pools, api or cli') },
  },
  {
    files: ['platform/pools/**/*.ts', 'platform/api/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(['../cli/*'], 'nothing imports the cli') },
  },
  {
    files: ['bin/**/*.js'],
    languageOptions: { globals: { process: 'readonly' } },
  },
)
