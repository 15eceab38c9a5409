import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../lib/gguf/float16.js';

describe('f16', () => {
  it('decodes known bit patterns', () => {
    expect([0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x8000, 0x7c00, 0xfc00].map(f16BitsToF32)).toEqual([1, -2, 65504, 2 ** -14, 2 ** -24, -0, Infinity, -Infinity]);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
  });

  it('round-trips all 63488 finite and infinite half values exactly', () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
      if (f32ToF16Bits(f16BitsToF32(h)) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  it('rounds every midpoint between neighbours to the even one, and just-off-midpoints to the nearer', () => {
    const bad: number[] = [];
    for (let h = 0; h < 0x7bff; h++) {
      const lo = f16BitsToF32(h);
      const hi = f16BitsToF32(h + 1);
      const mid = (lo + hi) / 2;
      const even = h % 2 === 0 ? h : h + 1;
      const step = (hi - lo) / 1024;
      const ok =
        f32ToF16Bits(mid) === even &&
        f32ToF16Bits(-mid) === (even | 0x8000) &&
        f32ToF16Bits(mid - step) === h &&
        f32ToF16Bits(mid + step) === h + 1;
      if (!ok) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  it('overflows to inf past 65520, flushes below 2^-25, and keeps NaN as ggml does', () => {
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(-1e10)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0);
    expect(f32ToF16Bits(2 ** -25 * 1.0001)).toBe(1);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
  });
});

describe('bf16', () => {
  it('rounds to nearest even and handles NaN like ggml', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    // 1 + 2^-8 is exactly halfway between bf16 1 and 1 + 2^-7: ties to even (1).
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(f32ToBf16Bits(-3.5)).toBe(0xc060);
    expect(f32ToBf16Bits(3.4e38)).toBe(0x7f80);
    expect(f32ToBf16Bits(NaN)).toBe(0x7fc0);
    expect(bf16BitsToF32(0xc060)).toBe(-3.5);
    const bad: number[] = [];
    for (let b = 0; b < 65536; b++) {
      if ((b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0) continue;
      if (f32ToBf16Bits(bf16BitsToF32(b)) !== b) bad.push(b);
    }
    expect(bad).toEqual([]);
  });
});
