import { describe, expect, it } from 'vitest';
import { memory, randomNormal, tensor, type Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';

const MiB = 1024 * 1024;

describe('tensor lifetime', () => {
  it('`using` disposes the tensor at scope exit, also when the scope throws', async () => {
    const before = (await memory()).active;
    let seen: Tensor | undefined;
    {
      using t = await tensor(new Float32Array(512 * 512).fill(1.5), [512, 512]);
      seen = t;
      expect(t.nbytes).toBe(MiB);
      expect((await memory()).active - before).toBeGreaterThanOrEqual(MiB);
    }
    expect(seen.disposed).toBe(true);
    expect((await memory()).active).toBe(before);

    const thrown = await (async () => {
      using t = await randomNormal([256, 1024], { seed: 4 });
      seen = t;
      throw new Error('inside the scope');
    })().catch((e: Error) => e.message);
    expect(thrown).toBe('inside the scope');
    expect(seen.disposed).toBe(true);
    expect((await memory()).active).toBe(before);
  });

  it('reports what a tensor holds to V8 as external memory, and takes it back on dispose', async () => {
    // V8's own count (napi_adjust_external_memory's total): process.memoryUsage().external leaves
    // these reports out on Node 20. Node's own bookkeeping moves it by a few hundred bytes too.
    const external = (): number => native().externalMemory();
    const near = (actual: number, expected: number): void => expect(Math.abs(actual - expected)).toBeLessThan(64 * 1024);
    const before = external();
    const t = await randomNormal([4096, 4096], { seed: 9 });
    expect(t.nbytes).toBe(64 * MiB);
    near(external() - before, 64 * MiB);
    const u = await randomNormal([1000, 1000], { seed: 9, dtype: 'float16' });
    expect(u.nbytes).toBe(2_000_000);
    near(external() - before, 64 * MiB + 2_000_000);
    t.dispose();
    near(external() - before, 2_000_000);
    // A second dispose does not take the bytes back twice.
    t.dispose();
    near(external() - before, 2_000_000);
    u.dispose();
    near(external() - before, 0);
  });
});
