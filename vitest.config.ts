import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'sdk/**/*.test.ts', 'platform/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // isolated-vm (the rule sandbox) needs it on Node 20 and later.
    execArgv: ['--no-node-snapshot'],
    maxWorkers: 2,
  },
})
