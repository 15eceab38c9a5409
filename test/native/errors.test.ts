import { describe, expect, it } from 'vitest';
import { add, matmul, native, quantize, tensor, toTypedArray } from '../../lib/index.js';

describe('MLX errors become rejected promises', () => {
  it('a shape mismatch rejects with MLX\'s own message, and the next call works', async () => {
    const a = await tensor(new Float32Array(6), [2, 3]);
    const b = await tensor(new Float32Array(8), [2, 4]);
    await expect(matmul(a, b)).rejects.toThrow(/\[matmul\] Last dimension of first input with shape \(2,3\) must match/);
    const ok = await matmul(a, await tensor(new Float32Array([1, 2, 3]), [3, 1]));
    expect(ok.shape).toEqual([2, 1]);
  });

  it('many failures in a row leave the MLX thread healthy', async () => {
    const a = await tensor(new Float32Array(3));
    const b = await tensor(new Float32Array(4));
    const failures = await Promise.allSettled(Array.from({ length: 50 }, () => add(a, b)));
    expect(failures.every((f) => f.status === 'rejected')).toBe(true);
    const reasons = failures.map((f) => (f.status === 'rejected' ? String(f.reason) : ''));
    expect(reasons[0]).toMatch(/Shapes \(3\) and \(4\) cannot be broadcast/);
    const sum = await add(a, a);
    expect([...((await toTypedArray(sum)) as Float32Array)]).toEqual([0, 0, 0]);
  });

  it('invalid quantization parameters reject with MLX\'s reason', async () => {
    const w = await tensor(new Float32Array(64 * 4), [4, 64]);
    await expect(quantize(w, { groupSize: 16 })).rejects.toThrow(/group size 16 is not supported/);
    await expect(quantize(w, { bits: 7 })).rejects.toThrow(/number of bits 7 is not supported/);
  });

  it('bad arguments are TypeErrors or RangeErrors on the JS side', async () => {
    await expect(tensor(new Float32Array(5), [2, 3])).rejects.toThrow(RangeError);
    await expect(tensor(new Uint16Array(2))).rejects.toThrow(/ambiguous/);
    await expect(tensor(new Float32Array(1), [-1])).rejects.toThrow(/dimensions/);
    expect(() => native().matmul({} as never, {} as never)).toThrow(/must be a Tensor/);
    const t = await tensor(new Float32Array(1));
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => native().add(t, t)).toThrow(/disposed Tensor/);
    expect(() => new (native().Tensor as unknown as new () => unknown)()).toThrow(/cannot be constructed directly/);
  });
});
