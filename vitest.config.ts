import { defineConfig } from 'vitest/config';

// Files that measure event-loop lag: on a 2-core machine a parallel fork doing MLX work steals the
// cores they measure, so they run last, one file at a time, with nothing else beside them.
const timing = [
  'test/native/concurrency.test.ts',
  'test/train/event-loop.test.ts',
  'test/train/kill-resume.test.ts',
  'test/train/prepare-event-loop.test.ts',
  'test/train/abort-eval.test.ts',
];

export default defineConfig({
  test: {
    // One MLX thread per process: forks keep each test file's native state apart.
    pool: 'forks',
    // The memory tests check that tensors the GC collects are freed.
    execArgv: ['--expose-gc'],
    setupFiles: ['test/setup/remove-temp-dirs.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: timing, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'timing', include: timing, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
