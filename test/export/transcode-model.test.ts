import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeGgufModel } from '../../lib/export/gguf-model.js';
import type { GgufExportType } from '../../lib/export/tensor-types.js';
import { findTensor, readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes } from '../../lib/gguf/tensor-data.js';
import { llamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { makeTinyModel, type TinyModel, type TinyModelOptions } from '../fixtures/tiny-model.js';
import { tempDir } from '../helpers/temp-dir.js';
import { addTinyTokenizer } from './gguf-model-fixtures.js';

/**
 * Whole files through the native transcoding path (stored bytes → decoded → encoded, no MLX): from
 * a quantized GGUF base as Ollama ships one (Q4_0 matrices, Q6_K output) and from an HF folder in
 * BF16 (Q/K rows reordered on the way), our Q8_0, Q4_0, Q4_K_M and F16 files equal, tensor by
 * tensor in type and bytes, what llama_model_quantize writes from our own F32 export.
 */

const oracle = await llamaQuantizeOracle(); // undefined only without a C compiler
const models: TinyModel[] = [];
afterAll(async () => {
  for (const m of models) await m.cleanup();
});

const SHAPE: TinyModelOptions = { hidden: 256, intermediate: 512, heads: 4, kvHeads: 2, layers: 4, vocab: 300, seed: 17 };

/** Tensors whose type or bytes differ between our `type` export of `source` and llama.cpp's requantization of our F32 export. */
async function differences(source: string, type: GgufExportType): Promise<string[]> {
  const dir = tempDir('transcode-model-');
  const f32 = join(dir, 'f32.gguf');
  await writeGgufModel({ source }, f32, { type: 'f32', threads: 2 });
  const ours = join(dir, `ours-${type}.gguf`);
  await writeGgufModel({ source }, ours, { type, threads: 2 });
  const theirs = join(dir, `llama-${type}.gguf`);
  await oracle!.quantizeFile(f32, theirs, type, 2);
  const [a, b] = [await readGguf(ours), await readGguf(theirs)];
  expect(a.tensors.map((t) => t.name).sort()).toEqual(b.tensors.map((t) => t.name).sort());
  const out: string[] = [];
  for (const t of a.tensors) {
    const their = findTensor(b, t.name)!;
    if (t.typeName !== their.typeName) out.push(`${t.name}: ours ${t.typeName}, llama.cpp ${their.typeName}`);
    else if (!Buffer.from(await readTensorBytes(a, t)).equals(Buffer.from(await readTensorBytes(b, their)))) out.push(`${t.name} (${t.typeName}) bytes`);
  }
  return out;
}

describe.skipIf(oracle === undefined)('exports transcoded from stored bytes equal llama_model_quantize of our F32 export', () => {
  it('from a Q4_0 GGUF base with a Q6_K output (Ollama layout): Q8_0, Q4_0, Q4_K_M, F16', async () => {
    const m = await makeTinyModel({ ...SHAPE, ggufType: 'Q4_0', outputType: 'Q6_K' });
    models.push(m);
    for (const type of ['q8_0', 'q4_0', 'q4_k_m', 'f16'] as const) expect({ type, differences: await differences(m.ggufPath, type) }).toEqual({ type, differences: [] });
  }, 300_000);

  it('from an HF folder in BF16 (q/k rows put in GGUF order by the transcoder): Q4_K_M, Q8_0', async () => {
    const m = await makeTinyModel({ ...SHAPE, dtype: 'bf16' });
    models.push(m);
    await addTinyTokenizer(m.hfDir, m.ggufPath);
    for (const type of ['q4_k_m', 'q8_0'] as const) expect({ type, differences: await differences(m.hfDir, type) }).toEqual({ type, differences: [] });
  }, 300_000);
});
