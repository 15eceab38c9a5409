import { describe, expect, it } from 'vitest';
import { canDequantize, dequantize, dequantizeInto } from '../../lib/gguf/dequantize.js';

// Blocks are packed here by hand from the field layouts in the reference (ggml-common.h), in the
// encoding direction, so a decoder that reads a field from the wrong place cannot agree.

const HALF = { '1': 0x3c00, '0.5': 0x3800, '0.25': 0x3400, '0.125': 0x3000, '0.0625': 0x2c00, '-1': 0xbc00, '-0.5': 0xb800 } as const;

/** The 12 packed bytes of Q4_K/Q5_K 6-bit scales and mins, as quantize_row_q4_K_ref writes them. */
function packScalesK4(scales: Uint8Array, sc: readonly number[], mn: readonly number[]): void {
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
}

/** Q2_K/Q3_K low 2 bits: 32 bytes per 128 elements, element j + l + 32k at bits 2k of byte j/4 + l. */
function pack2Bit(qs: Uint8Array, code: (e: number) => number): void {
  for (let j = 0; j < 256; j += 128) {
    for (let l = 0; l < 32; l++) {
      qs[j / 4 + l] = (code(j + l) & 3) | ((code(j + l + 32) & 3) << 2) | ((code(j + l + 64) & 3) << 4) | ((code(j + l + 96) & 3) << 6);
    }
  }
}

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
      packScalesK4(u.subarray(4, 16), sc, mn);
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

  it('Q5_0: fifth bit j of the little-endian u32 qh; x = (code − 16)·d', () => {
    // d = 1; qh bits 0, 16 and 31; qs[0] = 0xF0, qs[15] = 0x7A.
    const raw = new Uint8Array(22);
    raw.set([0x00, 0x3c, 0x01, 0x00, 0x01, 0x80]);
    raw[6] = 0xf0;
    raw[6 + 15] = 0x7a;
    const x = dequantize('Q5_0', raw);
    expect(x[0]).toBe(0); // low nibble 0 + bit 0 → code 16
    expect(x[16]).toBe(15); // high nibble 15 + bit 16 → code 31
    expect(x[15]).toBe(-6); // low nibble 10, bit 15 clear
    expect(x[31]).toBe(7); // high nibble 7 + bit 31 → code 23
    for (const j of [1, 14, 17, 30]) expect(x[j]).toBe(-16);

    // A negative d (quantize_row_q5_0_ref writes d = max/−16) and every code 0..31 in use.
    const code = (j: number): number => (j * 7 + 3) % 32;
    const b = block(22, (v, u) => {
      v.setUint16(0, HALF['-0.5'], true);
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        u[6 + j] = (code(j) & 15) | ((code(j + 16) & 15) << 4);
        qh |= ((code(j) >> 4) << j) | ((code(j + 16) >> 4) << (j + 16));
      }
      v.setUint32(2, qh >>> 0, true);
    });
    const y = dequantize('Q5_0', b);
    for (let j = 0; j < 32; j++) expect(y[j]).toBe((code(j) - 16) * -0.5);
    expect([y[0], y[20], y[29]]).toEqual([6.5, 0.5, 1]); // codes 3, 15, 14
  });

  it('Q5_1: x = code·d + m, with qh after both halves and qs at byte 8', () => {
    const raw = block(24, (v, u) => {
      v.setUint16(0, HALF['0.25'], true);
      v.setUint16(2, HALF['-1'], true);
      u[7] = 0x80; // qh bit 31
      u[8] = 0x05;
      u[8 + 15] = 0x3a;
    });
    const x = dequantize('Q5_1', raw);
    expect([x[0], x[15], x[16], x[31], x[1]]).toEqual([0.25, 1.5, -1, 3.75, -1]); // codes 5, 10, 0, 19, 0

    const code = (j: number): number => (j * 11 + 5) % 32;
    const b = block(24, (v, u) => {
      v.setUint16(0, HALF['0.125'], true);
      v.setUint16(2, HALF['0.5'], true);
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        u[8 + j] = (code(j) & 15) | ((code(j + 16) & 15) << 4);
        qh |= ((code(j) >> 4) << j) | ((code(j + 16) >> 4) << (j + 16));
      }
      v.setUint32(4, qh >>> 0, true);
    });
    const y = dequantize('Q5_1', b);
    for (let j = 0; j < 32; j++) expect(y[j]).toBe(code(j) * 0.125 + 0.5);
    expect([y[3], y[25]]).toEqual([1.25, 3.5]); // codes 6 and 24 (fifth bit set)
  });

  it('Q2_K: 16 sub-blocks of 16, scale byte = sc | m << 4, x = d·sc·q − dmin·m', () => {
    const sc = (g: number): number => (g * 5 + 1) % 16;
    const mn = (g: number): number => (g * 3 + 2) % 16;
    const q = (e: number): number => (e * 3 + (e >> 5)) & 3;
    const b = block(84, (v, u) => {
      for (let g = 0; g < 16; g++) u[g] = sc(g) | (mn(g) << 4);
      pack2Bit(u.subarray(16, 80), q);
      v.setUint16(80, HALF['0.5'], true);
      v.setUint16(82, HALF['0.25'], true);
    });
    const x = dequantize('Q2_K', b);
    expect(x).toHaveLength(256);
    for (let e = 0; e < 256; e++) expect(x[e]).toBe(0.5 * sc(e >> 4) * q(e) - 0.25 * mn(e >> 4));
    // Element 200: sub-block 12 (sc 13, m 6), code 606 & 3 = 2. Element 37: sub-block 2 (sc 11, m 8), code 0.
    expect([x[200], x[37]]).toEqual([11.5, -2]);
  });

  it('Q3_K: 3-bit codes minus 4, hmask bit set means no −4, 6-bit scales minus 32', () => {
    // All-zero block with d = 1: every scale is 0 − 32 and every code 0 − 4, so x = 128, except
    // element 0, whose hmask bit (hmask[0] bit 0) makes its code 4 − 4 = 0: −32·0 is −0, as in C.
    const zero = block(110, (v, u) => {
      u[0] = 1;
      v.setUint16(108, HALF['1'], true);
    });
    const z = dequantize('Q3_K', zero);
    expect(z[0]).toBe(-0);
    expect(z.subarray(1).every((value) => value === 128)).toBe(true);

    const ls = (g: number): number => (g * 13 + 7) % 64; // stored scale; the value is ls − 32
    const code = (e: number): number => (e * 5 + (e >> 3)) % 8; // stored 3-bit code; the value is code − 4
    const b = block(110, (v, u) => {
      for (let e = 0; e < 256; e++) if (code(e) > 3) u[e % 32]! |= 1 << (e >> 5);
      pack2Bit(u.subarray(32, 96), code);
      const scales = u.subarray(96, 108);
      for (let g = 0; g < 16; g++) {
        const l = ls(g);
        if (g < 8) scales[g] = l & 15;
        else scales[g - 8]! |= (l & 15) << 4;
        scales[8 + (g % 4)]! |= (l >> 4) << (2 * Math.floor(g / 4));
      }
      v.setUint16(108, HALF['0.25'], true);
    });
    const x = dequantize('Q3_K', b);
    for (let e = 0; e < 256; e++) expect(x[e]).toBe(0.25 * (ls(e >> 4) - 32) * (code(e) - 4));
    // e=5: scale 7−32, code 1−4; e=130: 47−32, 2−4; e=200: 35−32, 1−4; e=255: 10−32, 2−4.
    expect([x[5], x[130], x[200], x[255]]).toEqual([18.75, -7.5, -2.25, 11]);
  });

  it('Q5_K: Q4_K scales and nibbles plus a fifth bit, bit 2c / 2c+1 of qh[l] for chunk c', () => {
    const sc = [1, 63, 17, 40, 5, 33, 62, 48];
    const mn = [0, 63, 2, 21, 50, 16, 7, 63];
    const code = (e: number): number => (e * 7 + (e >> 5)) % 32;
    const b = block(176, (v, u) => {
      v.setUint16(0, HALF['1'], true);
      v.setUint16(2, HALF['0.5'], true);
      packScalesK4(u.subarray(4, 16), sc, mn);
      for (let c = 0; c < 4; c++) {
        for (let j = 0; j < 32; j++) {
          let l1 = code(64 * c + j);
          let l2 = code(64 * c + 32 + j);
          if (l1 > 15) (l1 -= 16), (u[16 + j]! |= 1 << (2 * c));
          if (l2 > 15) (l2 -= 16), (u[16 + j]! |= 2 << (2 * c));
          u[48 + 32 * c + j] = l1 | (l2 << 4);
        }
      }
    });
    const x = dequantize('Q5_K', b);
    expect(x).toHaveLength(256);
    for (let e = 0; e < 256; e++) expect(x[e]).toBe((sc[e >> 5] as number) * code(e) - 0.5 * (mn[e >> 5] as number));
    // e=200: sub-block 6 (62, 7), code 30; e=33: sub-block 1 (63, 63), code 8; e=255: sub-block 7 (48, 63), code 0.
    expect([x[200], x[33], x[255]]).toEqual([1856.5, 472.5, -31.5]);
  });

  it('decodes from any byte offset and into part of a larger output', () => {
    const f32 = new Uint8Array(1 + 8);
    new DataView(f32.buffer).setFloat32(1, 1.5, true);
    new DataView(f32.buffer).setFloat32(5, -2, true);
    expect([...dequantize('F32', f32.subarray(1))]).toEqual([1.5, -2]);
    const f16 = new Uint8Array([0xff, 0x00, 0x3c, 0x00, 0xc0]);
    expect([...dequantize('F16', f16.subarray(1))]).toEqual([1, -2]);

    const q8 = block(34, (v) => {
      v.setUint16(0, HALF['1'], true);
      for (let j = 0; j < 32; j++) v.setInt8(2 + j, j - 16);
    });
    const out = new Float32Array(100).fill(9);
    expect(dequantizeInto('Q8_0', q8, out, 50)).toBe(32);
    expect([out[49], out[50], out[81], out[82]]).toEqual([9, -16, 15, 9]);
    expect(() => dequantizeInto('Q8_0', q8, out, 69)).toThrow(/32 values at 69 do not fit in 100/);
  });

  it('rejects partial blocks and types it cannot decode', () => {
    expect(() => dequantize('Q8_0', new Uint8Array(35))).toThrow(/35 bytes is not a whole number of Q8_0 blocks \(34 bytes each\)/);
    expect(() => dequantize('IQ2_XXS', new Uint8Array(66))).toThrow(/IQ2_XXS is not supported/);
    // ggml uses Q8_K only for activations; no model file holds it.
    expect(() => dequantize('Q8_K', new Uint8Array(292))).toThrow(/Q8_K is not supported/);
    for (const t of ['Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q5_K', 'Q6_K']) expect(canDequantize(t)).toBe(true);
    expect(canDequantize(20)).toBe(false);
  });
});
