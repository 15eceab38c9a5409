import { describe, expect, it } from 'vitest';
import { canDequantize, dequantize } from '../../lib/gguf/dequantize.js';

// Blocks are packed here by hand from the field layouts in the reference (ggml-common.h), in the
// encoding direction, so a decoder that reads a field from the wrong place cannot agree.

const HALF = { '1': 0x3c00, '0.5': 0x3800, '0.25': 0x3400, '0.125': 0x3000, '0.0625': 0x2c00, '-1': 0xbc00 } as const;

function block(size: number, fill: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(size);
  fill(new DataView(b.buffer), b);
  return b;
}

describe('dequantize', () => {
  it('F32, F16 and BF16 are plain little-endian scalars', () => {
    expect([...dequantize('F32', new Uint8Array(new Float32Array([1.5, -2, 3e-8]).buffer))]).toEqual([1.5, -2, Math.fround(3e-8)]);
    expect([...dequantize('F16', new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00]))]).toEqual([1, -2, 2 ** -24]);
    expect([...dequantize('BF16', new Uint8Array([0x80, 0x3f, 0x60, 0xc0]))]).toEqual([1, -3.5]);
  });

  it('Q4_0: x[j] = (low nibble of qs[j] − 8)·d, x[j+16] = (high nibble − 8)·d', () => {
    const b = block(18, (v, u) => {
      v.setUint16(0, HALF['0.5'], true);
      for (let j = 0; j < 16; j++) u[2 + j] = j | ((15 - j) << 4);
    });
    const x = dequantize('Q4_0', b);
    expect(x).toHaveLength(32);
    expect([x[0], x[5], x[15], x[16], x[21], x[31]]).toEqual([-4, -1.5, 3.5, 3.5, 1, -4]);
    for (let j = 0; j < 16; j++) {
      expect(x[j]).toBe((j - 8) * 0.5);
      expect(x[j + 16]).toBe((15 - j - 8) * 0.5);
    }
  });

  it('Q4_1: x = nibble·d + m with the nibbles at byte 4 onwards', () => {
    const b = block(20, (v, u) => {
      v.setUint16(0, HALF['0.25'], true);
      v.setUint16(2, HALF['-1'], true);
      for (let j = 0; j < 16; j++) u[4 + j] = ((j * 3) & 15) | (j << 4);
    });
    const x = dequantize('Q4_1', b);
    for (let j = 0; j < 16; j++) {
      expect(x[j]).toBe(((j * 3) & 15) * 0.25 - 1);
      expect(x[j + 16]).toBe(j * 0.25 - 1);
    }
    expect([x[0], x[31]]).toEqual([-1, 2.75]);
  });

  it('Q8_0: x[j] = int8 qs[j]·d, over several blocks', () => {
    const bytes = new Uint8Array(34 * 2);
    const v = new DataView(bytes.buffer);
    v.setUint16(0, HALF['0.125'], true);
    v.setUint16(34, HALF['1'], true);
    for (let j = 0; j < 32; j++) {
      v.setInt8(2 + j, j - 16);
      v.setInt8(36 + j, j % 2 === 0 ? -128 : 127);
    }
    const x = dequantize('Q8_0', bytes);
    expect(x).toHaveLength(64);
    for (let j = 0; j < 32; j++) {
      expect(x[j]).toBe((j - 16) * 0.125);
      expect(x[32 + j]).toBe(j % 2 === 0 ? -128 : 127);
    }
  });

  it('Q4_K: 8 sub-blocks with 6-bit scales/mins packed into 12 bytes, nibbles split per 64-chunk', () => {
    const sc = [1, 63, 17, 40, 5, 33, 62, 48];
    const mn = [0, 63, 2, 21, 50, 16, 7, 63];
    const q = (s: number, e: number): number => (s * 7 + e) % 16;
    const b = block(144, (v, u) => {
      v.setUint16(0, HALF['1'], true);
      v.setUint16(2, HALF['0.5'], true);
      const scales = u.subarray(4, 16);
      for (let j = 0; j < 8; j++) {
        const ls = sc[j] as number;
        const lm = mn[j] as number;
        if (j < 4) {
          scales[j] = ls;
          scales[j + 4] = lm;
        } else {
          scales[j + 4] = (ls & 15) | ((lm & 15) << 4);
          scales[j - 4]! |= (ls >> 4) << 6;
          scales[j]! |= (lm >> 4) << 6;
        }
      }
      for (let s = 0; s < 8; s++) {
        for (let e = 0; e < 32; e++) {
          const at = 16 + (s >> 1) * 32 + e;
          u[at]! |= s % 2 === 0 ? q(s, e) : q(s, e) << 4;
        }
      }
    });
    const x = dequantize('Q4_K', b);
    expect(x).toHaveLength(256);
    for (let s = 0; s < 8; s++) {
      for (let e = 0; e < 32; e++) expect(x[s * 32 + e]).toBe(1 * (sc[s] as number) * q(s, e) - 0.5 * (mn[s] as number));
    }
    // Sub-block 6 (scale 62, min 7), element 3: code (42+3)%16 = 13.
    expect(x[6 * 32 + 3]).toBe(62 * 13 - 3.5);
  });

  it('Q6_K: 4 low bits in ql, 2 high bits in qh, int8 scale per 16, d last', () => {
    const code = (i: number): number => (i * 37 + 11) % 64;
    const scale = (g: number): number => (g % 2 === 0 ? 1 : -1) * (g * 8 + 1);
    const b = block(210, (v, u) => {
      for (let half = 0; half < 2; half++) {
        const base = half * 128;
        for (let l = 0; l < 32; l++) {
          const [a, bb, c, d] = [code(base + l), code(base + l + 32), code(base + l + 64), code(base + l + 96)];
          u[half * 64 + l] = (a & 15) | ((c & 15) << 4);
          u[half * 64 + l + 32] = (bb & 15) | ((d & 15) << 4);
          u[128 + half * 32 + l] = (a >> 4) | ((bb >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6);
        }
      }
      for (let g = 0; g < 16; g++) v.setInt8(192 + g, scale(g));
      v.setUint16(208, HALF['0.0625'], true);
    });
    const x = dequantize('Q6_K', b);
    expect(x).toHaveLength(256);
    for (let i = 0; i < 256; i++) expect(x[i]).toBe(0.0625 * scale(i >> 4) * (code(i) - 32));
    // Element 200: group 12 (scale 97), code (7400+11)%64 = 51.
    expect(x[200]).toBe(0.0625 * 97 * 19);
  });

  it('rejects partial blocks and types it cannot decode', () => {
    expect(() => dequantize('Q8_0', new Uint8Array(35))).toThrow(/35 bytes is not a whole number of Q8_0 blocks \(34 bytes each\)/);
    expect(() => dequantize('IQ2_XXS', new Uint8Array(66))).toThrow(/IQ2_XXS is not supported/);
    expect(() => dequantize('Q5_K', new Uint8Array(176))).toThrow(/Q5_K is not supported/);
    expect(canDequantize('Q6_K')).toBe(true);
    expect(canDequantize(20)).toBe(false);
  });
});
