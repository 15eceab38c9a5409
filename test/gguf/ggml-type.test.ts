import { describe, expect, it } from 'vitest';
import { GGML_TYPES, REMOVED_GGML_TYPE_IDS, ggmlTensorBytes, resolveGgmlType } from '../../lib/gguf/ggml-type.js';
import { llamaCppGgmlTypes } from '../fixtures/llama-cpp-oracle.js';

describe('ggml type table', () => {
  it("matches the sizes and names compiled into llama.cpp's ggml", async () => {
    const ggml = await llamaCppGgmlTypes();
    for (const t of GGML_TYPES) {
      expect({ name: t.name, ...ggml.sizeOf(t.id) }).toEqual({ name: t.name, typeSize: t.typeSize, blockSize: t.blockSize });
      expect(ggml.idOfName(t.name)).toBe(t.id);
    }
    for (const id of REMOVED_GGML_TYPE_IDS) expect(ggml.sizeOf(id)).toBeUndefined();
  });

  it('has the block layouts of the reference for the types we decode', () => {
    const sizes = Object.fromEntries(GGML_TYPES.filter((t) => t.supported).map((t) => [t.name, [t.blockSize, t.typeSize]]));
    expect(sizes).toMatchObject({ F32: [1, 4], F16: [1, 2], BF16: [1, 2], Q4_0: [32, 18], Q4_1: [32, 20], Q8_0: [32, 34], Q4_K: [256, 144], Q6_K: [256, 210] });
    expect(GGML_TYPES.filter((t) => t.name.startsWith('IQ')).every((t) => !t.supported)).toBe(true);
  });

  it('computes tensor bytes and rejects rows that are not whole blocks', () => {
    expect(ggmlTensorBytes(resolveGgmlType('Q4_0'), [4096n, 1024n])).toBe(4096n / 32n * 18n * 1024n);
    expect(ggmlTensorBytes(resolveGgmlType('q6_k'), [512n, 3n, 2n])).toBe(2n * 210n * 6n);
    expect(ggmlTensorBytes(resolveGgmlType(0), [7n, 0n])).toBe(0n);
    expect(ggmlTensorBytes(resolveGgmlType('Q8_0'), [48n])).toMatch(/not a multiple of the Q8_0 block size 32/);
    expect(() => resolveGgmlType(4)).toThrow(/removed/);
    expect(() => resolveGgmlType('Q9_9')).toThrow(/unknown/);
  });
});
