import { defineConfig } from 'vitest/config';

// Integration tests start real apiservers and nats-servers; on 2 cores they run one file at a time
// inside a file but files may run in parallel up to the pool size.
export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**'],
    globalSetup: ['e2e/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
