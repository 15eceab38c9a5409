import { describe, expect, it } from 'vitest';
import { roundToBf16, roundToF16 } from '../../lib/gguf/float16.js';
import { defaultComputeDtype } from '../../lib/model/load-model.js';

describe('default compute dtype', () => {
  it('float32 on the CPU, whatever the source', () => {
    expect(defaultComputeDtype(false, 'hf')).toBe('float32');
    expect(defaultComputeDtype(false, 'gguf')).toBe('float32');
    expect(defaultComputeDtype(false, 'ollama')).toBe('float32');
  });

  it('on a GPU: bfloat16 for HF folders, float16 for GGUF files so their float16 scales stay exact', () => {
    expect(defaultComputeDtype(true, 'hf')).toBe('bfloat16');
    expect(defaultComputeDtype(true, 'gguf')).toBe('float16');
    // Ollama models are GGUF blobs.
    expect(defaultComputeDtype(true, 'ollama')).toBe('float16');
  });

  it('float16 holds every GGUF block scale exactly; bfloat16 does not', () => {
    // A float16 scale with all 10 mantissa bits in use, as llama.cpp's quantizer writes them.
    const scale = 1 + 1023 / 1024;
    expect(roundToF16(scale)).toBe(scale);
    // bfloat16 keeps 7 mantissa bits: the nearest value is 2.
    expect(roundToBf16(scale)).toBe(2);
  });
});
