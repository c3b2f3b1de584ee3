import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.spec.ts', 'clients/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Each test file gets its own database, so files run in parallel processes; they
    // mostly wait on the database and the network, so more of them than cores pays off.
    pool: 'forks',
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
