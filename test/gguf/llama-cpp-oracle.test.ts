import { readGgufFileInfo } from 'node-llama-cpp';
import { afterAll, describe, expect, it } from 'vitest';
import { readGguf } from '../../lib/gguf/reader.js';
import { openLlamaCppOracle, type LlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, TINY_RANDOM_BLOCK_TYPES, type TinyModel, type TinyModelOptions } from '../fixtures/tiny-model.js';
import { logitsRow, referenceLogits } from '../helpers/llama-reference.js';
import { centered } from '../helpers/llama-cpp-logits.js';

// Measured: F32 weights agree to ~2e-7. For F16 weights llama.cpp's CPU matmul rounds the
// activations to f16 (~5e-4), and for Q8_0/Q4_0 weights it quantizes them to Q8_0 (~1-2e-2),
// so those bounds are looser; a wrong Q/K permutation is still 0.1-0.5 off (checked below).
const MAX_REL_ERROR = { F32: 1e-5, F16: 2e-3, Q8_0: 3e-2, Q4_0: 3e-2 } as const;
// With a K-quant output.weight llama.cpp quantizes the final activations to Q8_K (Q8_0/Q8_1 for Q5_0/Q5_1).
const K_QUANT_OUTPUT_REL_ERROR = 3e-2;

function relError(got: Float64Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += ((got[i] as number) - (want[i] as number)) ** 2;
    den += (want[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}

const opened: { model: TinyModel; oracle: LlamaCppOracle }[] = [];
async function open(options: TinyModelOptions): Promise<{ model: TinyModel; oracle: LlamaCppOracle }> {
  const model = await makeTinyModel(options);
  const oracle = await openLlamaCppOracle(model.ggufPath);
  opened.push({ model, oracle });
  return { model, oracle };
}

afterAll(async () => {
  for (const { model, oracle } of opened) {
    await oracle.dispose();
    await model.cleanup();
  }
});

describe('llama.cpp loads the GGUF our writer makes', () => {
  const cases: [string, TinyModelOptions][] = [
    ['F32 / f32 safetensors', { ggufType: 'F32', dtype: 'f32' }],
    ['F16 / bf16 safetensors', { ggufType: 'F16', dtype: 'bf16', seed: 2 }],
    ['Q8_0 / f32, Llama, tied embeddings', { ggufType: 'Q8_0', dtype: 'f32', arch: 'llama', tiedEmbeddings: true, seed: 3 }],
    ['Q4_0 / f16, 3 layers, MHA', { ggufType: 'Q4_0', dtype: 'f16', layers: 3, kvHeads: 4, seed: 4, ropeTheta: 1e6 }],
    // Like Ollama's Q4_0 blobs, whose output.weight is Q6_K; checks our Q6_K/Q4_K decoders too.
    ['Q4_0 with Q6_K output', { ggufType: 'Q4_0', outputType: 'Q6_K', hidden: 256, heads: 8, kvHeads: 2, intermediate: 256, seed: 5 }],
    ['F32 with Q4_K output', { ggufType: 'F32', outputType: 'Q4_K', hidden: 256, heads: 4, kvHeads: 2, intermediate: 256, seed: 6 }],
  ];
  for (const [label, options] of cases) {
    it(`${label}: logits equal a float64 forward of the HF weights (Q/K permutation holds)`, async () => {
      const { model, oracle } = await open(options);
      const tokens = [1, 300, 17, 42, 260, 383, 5, 99];
      const got = await oracle.logits(tokens);
      const want = referenceLogits(model.config, model.weights, tokens);
      const kOutput = (TINY_RANDOM_BLOCK_TYPES as readonly string[]).includes(model.config.outputType);
      const bound = kOutput ? Math.max(K_QUANT_OUTPUT_REL_ERROR, MAX_REL_ERROR[model.config.ggufType]) : MAX_REL_ERROR[model.config.ggufType];
      expect(got).toHaveLength(tokens.length);
      for (let t = 0; t < tokens.length; t++) {
        expect(got[t]).toHaveLength(model.config.vocab);
        expect(relError(got[t]!, centered(logitsRow(want, model.config.vocab, t)))).toBeLessThan(bound);
      }
      // Negative control: HF weights with llama.cpp's RoPE pairing (i.e. an unpermuted GGUF)
      // must be far outside the bound, or this test could not see a wrong permutation.
      const wrong = referenceLogits(model.config, model.weights, tokens, { ropeStyle: 'interleaved' });
      expect(relError(got[tokens.length - 1]!, centered(logitsRow(wrong, model.config.vocab, tokens.length - 1)))).toBeGreaterThan(4 * bound);
    });
  }

  it('tokenizes with the SPM vocabulary, merging pieces and falling back to bytes', async () => {
    const { model, oracle } = opened[0] ?? (await open({}));
    const ids = oracle.tokenize('hello world', { addBos: true });
    expect(ids.map((id) => model.vocab.tokens[id])).toEqual(['<s>', '▁hello', '▁world']);
    // "é" is not a piece, so it becomes its two UTF-8 bytes.
    const bytes = oracle.tokenize('é');
    expect(bytes.slice(-2).map((id) => model.vocab.tokens[id])).toEqual(['<0xC3>', '<0xA9>']);
    expect(oracle.detokenize(oracle.tokenize('hello é world'))).toBe('hello é world');
    expect(oracle.bos).toBe(1);
    expect(oracle.eos).toBe(2);
  });

  it('greedy generation follows the argmax of the logits', async () => {
    const { oracle } = opened[0] ?? (await open({}));
    const prompt = [1, 300, 17];
    const generated = await oracle.greedy(prompt, 4);
    expect(generated.length).toBeGreaterThan(0);
    const seq = [...prompt];
    for (const token of generated) {
      const logits = (await oracle.logits(seq)).at(-1)!;
      expect(token).toBe(logits.indexOf(Math.max(...logits)));
      seq.push(token);
    }
  });

  it("node-llama-cpp's own GGUF parser reads the same metadata and tensor table", async () => {
    const { model } = opened[0] ?? (await open({}));
    const ours = await readGguf(model.ggufPath);
    const theirs = await readGgufFileInfo(model.ggufPath, { readTensorInfo: true, ignoreKeys: [] });
    expect(theirs.version).toBe(3);
    expect(theirs.metadata.general.architecture).toBe('llama');
    expect(theirs.metadata.llama?.attention?.head_count_kv).toBe(model.config.kvHeads);
    expect(theirs.metadata.tokenizer.ggml.tokens).toEqual(ours.metadata.get('tokenizer.ggml.tokens'));
    expect(theirs.tensorInfo?.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.fileOffset)])).toEqual(
      ours.tensors.map((t) => [t.name, [...t.ne], t.ggmlType, t.offset]),
    );
  });
});

describe('llama.cpp decodes every block type we decode, to the same values', () => {
  // token_embd rows enter llama.cpp's graph through get_rows, which calls ggml's own
  // dequantize_row_*; with every other tensor F32, logits reach F32 agreement (measured ~2e-7)
  // only if each decoded embedding value is the same. 96 distinct tokens cover 96 random rows.
  const tokens = Array.from({ length: 96 }, (_, i) => 3 + ((i * 97) % 381));
  for (const [i, type] of TINY_RANDOM_BLOCK_TYPES.entries()) {
    it(`${type} token_embd (rest F32): logits agree to F32 precision`, async () => {
      const { model, oracle } = await open({ ggufType: 'F32', embeddingType: type, hidden: 256, heads: 4, kvHeads: 2, intermediate: 256, seed: 40 + i });
      const got = await oracle.logits(tokens);
      const want = referenceLogits(model.config, model.weights, tokens);
      for (let t = 0; t < tokens.length; t++) {
        expect(relError(got[t]!, centered(logitsRow(want, model.config.vocab, t)))).toBeLessThan(MAX_REL_ERROR.F32);
      }
    });
  }

  // output.weight goes through llama.cpp's quantized dot products instead (vec_dot_*): a second,
  // independent reading of the same bytes, with the activation-quantization bound above.
  for (const [i, type] of TINY_RANDOM_BLOCK_TYPES.entries()) {
    it(`${type} output.weight (rest F32): logits agree within the activation-quantization bound`, async () => {
      const { model, oracle } = await open({ ggufType: 'F32', outputType: type, hidden: 256, heads: 4, kvHeads: 2, intermediate: 256, seed: 50 + i });
      const few = tokens.slice(0, 8);
      const got = await oracle.logits(few);
      const want = referenceLogits(model.config, model.weights, few);
      for (let t = 0; t < few.length; t++) {
        expect(relError(got[t]!, centered(logitsRow(want, model.config.vocab, t)))).toBeLessThan(K_QUANT_OUTPUT_REL_ERROR);
      }
    });
  }
});
