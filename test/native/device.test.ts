import { totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { clearCache, device, memory, native, randomNormal, resetPeakMemory, setCacheLimit, setMemoryLimit, useDevice } from '../../lib/index.js';

describe('device and memory', () => {
  it('reports the backend MLX runs on', async () => {
    const d = await device();
    // This build has no GPU backend, so MLX's default device is the CPU; on a Mac it is the GPU.
    expect(['cpu', 'gpu']).toContain(d.type);
    if (process.platform === 'linux') {
      expect(d.type).toBe('cpu');
      expect(d.memorySize).toBe(totalmem());
      await expect(useDevice('gpu')).rejects.toThrow(/no GPU backend/);
    }
    expect(d.name.length).toBeGreaterThan(0);
    expect(native().mlxVersion).toBe('0.31.2');
  });

  it('tracks peak memory and resets it', async () => {
    await resetPeakMemory();
    const start = await memory();
    const t = await randomNormal([512, 512], { seed: 1 });
    const during = await memory();
    expect(during.peak).toBeGreaterThanOrEqual(start.active + t.nbytes);
    t.dispose();
    await resetPeakMemory();
    const after = await memory();
    expect(after.peak).toBeLessThan(during.peak);
  });

  it('sets limits and returns the previous ones', async () => {
    const original = (await memory()).limit;
    expect(await setMemoryLimit(1 << 30)).toBe(original);
    expect((await memory()).limit).toBe(1 << 30);
    expect(await setMemoryLimit(original)).toBe(1 << 30);
    const gpu = (await device()).type === 'gpu';
    const originalCache = await setCacheLimit(0);
    (await randomNormal([256, 256], { seed: 2 })).dispose();
    expect((await memory()).cache).toBe(0);
    expect(await setCacheLimit(1 << 28)).toBe(0);
    // MLX's CPU-only allocator keeps no buffer cache and reports every cache limit as 0; the Metal
    // and CUDA allocators cache freed buffers up to the limit.
    expect(await setCacheLimit(originalCache)).toBe(gpu ? 1 << 28 : 0);
    if (gpu) {
      (await randomNormal([256, 256], { seed: 2 })).dispose();
      expect((await memory()).cache).toBeGreaterThan(0);
    }
    await clearCache();
    expect((await memory()).cache).toBe(0);
  });
});
