import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeTensor } from '../../lib/export/quantize.js';
import { fileTypeOf, tensorTypeFor, type GgufExportType, type TensorTypeModel } from '../../lib/export/tensor-types.js';
import { findTensor, readGguf, type GgufFile } from '../../lib/gguf/reader.js';
import { readTensorBytes, readTensorFloat32 } from '../../lib/gguf/tensor-data.js';
import { tensor } from '../../lib/tensor.js';
import { tempDir } from '../helpers/temp-dir.js';
import { llamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { makeTinyModel, type TinyModel, type TinyModelOptions } from '../fixtures/tiny-model.js';

/**
 * The acceptance check for quantized export: from the same F32 GGUF, llama.cpp's
 * llama_model_quantize and our tensorTypeFor + encodeTensor give every tensor the same type and
 * the same bytes, and the file the same general.file_type.
 */

const oracle = await llamaQuantizeOracle(); // undefined only without a C compiler
const models: TinyModel[] = [];
afterAll(async () => {
  for (const m of models) await m.cleanup();
});

async function tinyF32(options: TinyModelOptions): Promise<TinyModel> {
  const m = await makeTinyModel({ ggufType: 'F32', vocab: 300, seed: 5, ...options });
  models.push(m);
  return m;
}

function modelOf(m: TinyModel): TensorTypeModel {
  const c = m.config;
  return { numLayers: c.layers, numHeads: c.heads, numKvHeads: c.kvHeads, tiedEmbeddings: c.tiedEmbeddings };
}

async function quantizedByLlama(m: TinyModel, type: GgufExportType): Promise<GgufFile> {
  const out = join(tempDir('quantize-model-'), `${type}.gguf`);
  await oracle!.quantizeFile(m.ggufPath, out, type, 2);
  return readGguf(out);
}

interface Comparison {
  typeMismatches: string[];
  byteMismatches: string[];
  types: Record<string, number>;
}

/** Every tensor of the F32 file, typed and encoded by us, against llama.cpp's file. */
async function compareWithLlama(m: TinyModel, type: GgufExportType): Promise<Comparison> {
  const f32 = await readGguf(m.ggufPath);
  const theirs = await quantizedByLlama(m, type);
  expect(theirs.metadata.get('general.file_type')).toBe(fileTypeOf(type));
  expect(theirs.tensors.map((t) => t.name).sort()).toEqual(f32.tensors.map((t) => t.name).sort());
  const result: Comparison = { typeMismatches: [], byteMismatches: [], types: {} };
  for (const info of f32.tensors) {
    const their = findTensor(theirs, info.name)!;
    const ours = tensorTypeFor({ name: info.name, ne: info.ne }, type, modelOf(m));
    result.types[ours] = (result.types[ours] ?? 0) + 1;
    if (ours !== their.typeName) {
      result.typeMismatches.push(`${info.name}: ours ${ours}, llama.cpp ${their.typeName}`);
      continue;
    }
    const t = await tensor(await readTensorFloat32(f32, info), [...info.shape]);
    try {
      const bytes = Buffer.from(await encodeTensor(t, ours, { threads: 2 }));
      if (!bytes.equals(Buffer.from(await readTensorBytes(theirs, their)))) result.byteMismatches.push(`${info.name} (${ours})`);
    } finally {
      t.dispose();
    }
  }
  return result;
}

describe.skipIf(oracle === undefined)('quantized export equals llama_model_quantize, tensor by tensor', () => {
  it('widths that are multiples of 256 (8 layers, GQA): Q8_0, Q4_0, Q4_K_M, F16, BF16, F32', async () => {
    const m = await tinyF32({ hidden: 256, intermediate: 512, heads: 4, kvHeads: 2, layers: 8 });
    const expectedTypes: Record<GgufExportType, Record<string, number>> = {
      q8_0: { Q8_0: 58, F32: 17 },
      q4_0: { Q4_0: 57, Q6_K: 1, F32: 17 },
      // output + attn_v and ffn_down of layers 0, 3, 6, 7 in Q6_K
      q4_k_m: { Q4_K: 49, Q6_K: 9, F32: 17 },
      f16: { F16: 58, F32: 17 },
      bf16: { BF16: 58, F32: 17 },
      f32: { F32: 75 },
    };
    for (const type of ['q8_0', 'q4_0', 'q4_k_m', 'f16', 'bf16', 'f32'] as const) {
      const r = await compareWithLlama(m, type);
      expect({ type, types: r.types, typeMismatches: r.typeMismatches, byteMismatches: r.byteMismatches }).toEqual({
        type,
        types: expectedTypes[type],
        typeMismatches: [],
        byteMismatches: [],
      });
    }
  }, 300_000);

  it('widths K-quants cannot take fall back as llama.cpp does (Q5_0, Q8_0, F16)', async () => {
    // hidden 160 = 5·32; ffn_down rows of 200 are not even a multiple of 32.
    const m = await tinyF32({ hidden: 160, intermediate: 200, heads: 4, kvHeads: 2, layers: 8 });
    for (const type of ['q4_k_m', 'q4_0', 'q8_0'] as const) {
      const r = await compareWithLlama(m, type);
      expect({ type, typeMismatches: r.typeMismatches, byteMismatches: r.byteMismatches }).toEqual({ type, typeMismatches: [], byteMismatches: [] });
      expect(r.types.F16).toBe(8); // every ffn_down
      if (type === 'q4_k_m') expect(Object.keys(r.types).sort()).toEqual(['F16', 'F32', 'Q5_0', 'Q8_0']);
    }
  }, 300_000);

  it('tied embeddings: token_embd.weight is typed as the output', async () => {
    const m = await tinyF32({ hidden: 256, intermediate: 256, heads: 4, kvHeads: 4, layers: 4, tiedEmbeddings: true });
    for (const type of ['q4_k_m', 'q4_0', 'q8_0'] as const) {
      const r = await compareWithLlama(m, type);
      expect({ type, typeMismatches: r.typeMismatches, byteMismatches: r.byteMismatches }).toEqual({ type, typeMismatches: [], byteMismatches: [] });
    }
    const embd = { name: 'token_embd.weight', ne: [256, 300] };
    expect(tensorTypeFor(embd, 'q4_k_m', modelOf(m))).toBe('Q6_K');
  }, 300_000);

  it('80 layers with GQA (llama.cpp counts it as a 70B): attn_v Q5_K outside the Q6_K layers', async () => {
    const m = await tinyF32({ hidden: 256, intermediate: 256, heads: 4, kvHeads: 2, layers: 80, vocab: 270 });
    const theirs = await quantizedByLlama(m, 'q4_k_m');
    const mismatches = theirs.tensors
      .map((t) => [t.name, t.typeName, tensorTypeFor({ name: t.name, ne: t.ne }, 'q4_k_m', modelOf(m))] as const)
      .filter(([, their, ours]) => their !== ours);
    expect(mismatches).toEqual([]);
    expect(theirs.tensors.filter((t) => t.name.endsWith('attn_v.weight') && t.typeName === 'Q5_K').length).toBeGreaterThan(0);
  }, 300_000);
});
