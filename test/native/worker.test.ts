import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

// Each Node environment gets its own MLX thread; a worker that loads the addon, computes and
// exits must not take the process down or leak its thread.
describe('worker threads', () => {
  it('computes in a worker and exits cleanly, twice', async () => {
    for (let round = 0; round < 2; round++) {
      const result = await new Promise<number[]>((resolve, reject) => {
        const w = new Worker(
          `
          const { parentPort } = require('node:worker_threads');
          const m = require(${JSON.stringify(require.resolve('../../build/Release/mlx_qlora.node'))});
          (async () => {
            const a = await m.fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
            const c = await m.matmul(a, a);
            parentPort.postMessage([...new Float32Array(await m.toBytes(c))]);
            // Left undisposed on purpose: teardown must free them.
          })();
          `,
          { eval: true },
        );
        w.once('message', resolve);
        w.once('error', reject);
      });
      expect(result).toEqual([7, 10, 15, 22]);
    }
  });
});
