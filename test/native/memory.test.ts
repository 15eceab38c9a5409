import { describe, expect, it } from 'vitest';
import { clearCache, memory, randomNormal, tensor } from '../../lib/index.js';

describe('MLX memory is released', () => {
  it('10,000 create/dispose cycles leave active memory where it started', async () => {
    const data = new Float32Array(4096);
    // Warm up MLX's allocator and caches before taking the baseline.
    (await tensor(data)).dispose();
    const before = (await memory()).active;
    for (let i = 0; i < 10_000; i++) {
      const t = await tensor(data, [64, 64]);
      t.dispose();
    }
    const after = (await memory()).active;
    expect(after).toBe(before);
  });

  it('disposing returns the bytes to MLX (active memory drops by the tensor size)', async () => {
    const before = (await memory()).active;
    const t = await randomNormal([1024, 1024], { seed: 3 });
    expect(t.nbytes).toBe(4 * 1024 * 1024);
    expect((await memory()).active - before).toBeGreaterThanOrEqual(t.nbytes);
    t.dispose();
    expect((await memory()).active).toBe(before);
    await clearCache();
    expect((await memory()).cache).toBe(0);
  });

  it('tensors the garbage collector finalizes are freed on the MLX thread', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'tests run with --expose-gc').toBeTypeOf('function');
    const before = (await memory()).active;
    for (let i = 0; i < 200; i++) await randomNormal([256, 256], { seed: i });
    for (let round = 0; round < 20 && (await memory()).active > before; round++) {
      gc!();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await memory()).active).toBe(before);
  });
});
