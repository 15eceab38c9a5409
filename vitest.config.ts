import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One MLX thread per process: forks keep each test file's native state apart.
    pool: 'forks',
    // The memory tests check that tensors the GC collects are freed.
    execArgv: ['--expose-gc'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
