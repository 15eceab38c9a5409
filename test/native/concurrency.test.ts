import { describe, expect, it } from 'vitest';
import { add, disposeAll, matmul, randomNormal, tensor, toTypedArray } from '../../lib/index.js';

describe('the MLX thread keeps the event loop free', () => {
  it('1,000 concurrent jobs all resolve with their own results', async () => {
    const one = await tensor(new Float32Array([1]));
    const inputs = await Promise.all(Array.from({ length: 1000 }, (_, i) => tensor(new Float32Array([i]))));
    const sums = await Promise.all(inputs.map((t) => add(t, one)));
    const values = await Promise.all(sums.map((t) => toTypedArray(t)));
    values.forEach((v, i) => expect((v as Float32Array)[0]).toBe(i + 1));
    disposeAll(inputs, sums, one);
  });

  it('a 5-second stream of 1024×1024 matmuls never stalls a 10 ms timer by more than 50 ms', async () => {
    const a = await randomNormal([1024, 1024], { seed: 1 });
    const b = await randomNormal([1024, 1024], { seed: 2 });
    let last = performance.now();
    let worstLag = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worstLag = Math.max(worstLag, now - last - 10);
      last = now;
      ticks++;
    }, 10);
    const end = performance.now() + 5000;
    let done = 0;
    // Two in flight, so the MLX thread is never idle while JS handles a result.
    const worker = async () => {
      while (performance.now() < end) {
        const c = await matmul(a, b);
        c.dispose();
        done++;
      }
    };
    await Promise.all([worker(), worker()]);
    clearInterval(timer);
    expect(done).toBeGreaterThan(5);
    expect(ticks).toBeGreaterThan(200);
    expect(worstLag).toBeLessThan(50);
  }, 30_000);
});
