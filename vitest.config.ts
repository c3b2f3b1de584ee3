import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.spec.ts', 'clients/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Each test file gets its own database, so files run in parallel processes.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
