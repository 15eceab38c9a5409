/**
 * HF bases with a byte-level BPE vocabulary (Llama 3's 128k tokens) exported to GGUF: llama.cpp reads
 * the `gpt2` vocabulary with merges and the `llama-bpe` pre-tokenizer and splits text as our tokenizer
 * does; as `llama` and as `qwen2` (attention biases, NeoX RoPE, q/k rows left in HF order) its
 * log-probs equal our forward.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeGgufModel } from '../../lib/export/gguf-model.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { loadModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { readSafetensors, writeSafetensorsModel, type SafetensorsTensor } from '../fixtures/safetensors.js';
import { makeTinyModel } from '../fixtures/tiny-model.js';
import { llama3Files } from '../fixtures/tokenizers/real-tokenizers.js';
import { seededFloats } from '../helpers/reference.js';
import { tempDir } from '../helpers/temp-dir.js';
import { llamaCppLogProbs, logSoftmax } from './gguf-model-fixtures.js';

const VOCAB = 128256;
const HIDDEN = 32;
const TEXTS = [
  'Hello world, this is a test.',
  'Café déjà vu: naïve façade, 12345 numbers',
  'emoji 🦙🚀 and 漢字 too',
  "  leading spaces\tand tabs\n\nnewlines, don't won't",
  '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
];

/** A tiny decoder (tied embeddings) with Llama 3's tokenizer and a 128256-row embedding, as `llama` or `qwen2`. */
async function byteLevelModel(family: 'llama' | 'qwen2'): Promise<string> {
  const dir = tempDir(`gguf-bpe-${family}-`);
  const tiny = await makeTinyModel({ arch: 'llama', layers: 2, hidden: HIDDEN, heads: 2, kvHeads: 1, intermediate: 64, vocab: 384, tiedEmbeddings: true, seed: 51, dir: join(dir, 'tiny') });
  const { tensors } = await readSafetensors(join(tiny.hfDir, 'model.safetensors'));
  const weights = new Map<string, SafetensorsTensor>([...tensors].map(([name, t]) => [name, { shape: t.entry.shape, values: t.values }]));
  weights.set('model.embed_tokens.weight', { shape: [VOCAB, HIDDEN], values: seededFloats(VOCAB * HIDDEN, 7) });
  if (family === 'qwen2') {
    let seed = 100;
    for (let l = 0; l < 2; l++) {
      for (const [p, rows] of [['q', 32], ['k', 16], ['v', 16]] as const) {
        weights.set(`model.layers.${l}.self_attn.${p}_proj.bias`, { shape: [rows], values: seededFloats(rows, seed++).map((x) => x * 0.5) });
      }
    }
  }
  await writeSafetensorsModel(tiny.hfDir, weights, 'F32');
  const config = { ...tiny.hfConfig, vocab_size: VOCAB, bos_token_id: 128000, eos_token_id: 128001 };
  await writeFile(join(tiny.hfDir, 'config.json'), JSON.stringify(family === 'qwen2' ? { ...config, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', attention_bias: true } : config));
  const files = llama3Files();
  await writeFile(join(tiny.hfDir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(tiny.hfDir, 'tokenizer_config.json'), JSON.stringify(files.config));
  return tiny.hfDir;
}

describe('byte-level BPE bases', () => {
  for (const family of ['llama', 'qwen2'] as const) {
    it(`${family}: llama.cpp tokenizes as ours and its log-probs equal our forward`, async () => {
      const hf = await byteLevelModel(family);
      const out = join(hf, '..', 'model.gguf');
      await writeGgufModel({ source: hf }, out, { type: 'f32' });
      const file = await readGguf(out);
      expect(file.metadata.get('general.architecture')).toBe(family);
      expect(file.metadata.get('tokenizer.ggml.model')).toBe('gpt2');
      expect(file.metadata.get('tokenizer.ggml.pre')).toBe('llama-bpe');
      expect(file.tensors.some((t) => t.name === 'blk.0.attn_q.bias')).toBe(family === 'qwen2');
      const { tokenizer } = await loadModelTokenizer(hf);
      const oracle = await openLlamaCppOracle(out);
      try {
        expect(oracle.vocabSize).toBe(VOCAB);
        expect(oracle.bos).toBe(128000);
        for (const text of TEXTS) expect(oracle.tokenize(text, { special: true }), text).toEqual(Array.from(tokenizer.encode(text)));
      } finally {
        await oracle.dispose();
      }
      const prompt = [128000, ...tokenizer.encode(TEXTS[0]!)];
      const theirs = await llamaCppLogProbs(out, [prompt]);
      const model = await loadModel(hf, { quantization: 'none' });
      try {
        const t = await model.native.logits({ shape: [1, prompt.length], tokens: Int32Array.from(prompt) });
        const values = (await toTypedArray(t)) as Float32Array;
        t.dispose();
        let gap = 0;
        for (let i = 0; i < prompt.length; i++) {
          const raw = values.slice(i * VOCAB, (i + 1) * VOCAB);
          const ours = logSoftmax([raw])[0]!;
          let lo = Infinity;
          let hi = -Infinity;
          for (const v of raw) {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
          }
          const row = theirs[i]!;
          for (let j = 0; j < VOCAB; j++) if (Number.isFinite(row[j]!)) gap = Math.max(gap, Math.abs(ours[j]! - row[j]!) / (hi - lo));
        }
        console.log(`${family}: max |Δlogit| / range ${gap.toExponential(3)}`);
        expect(gap).toBeLessThan(1e-3);
      } finally {
        model.dispose();
      }
    }, 120_000);
  }
});
