/**
 * Bases for the model-GGUF export tests: a tiny random decoder with a real 32002-token vocabulary
 * (Llama 2's SentencePiece BPE plus ChatML's <|im_start|>/<|im_end|>, as dolphin-mistral has it),
 * once as an HF folder with tokenizer.json and once as a GGUF with llama.cpp's tokenizer keys, and
 * adapter folders with random non-zero A and B saved exactly as a training run saves them.
 */
import { writeFile } from 'node:fs/promises';
import { getLlama, LlamaLogLevel, type Llama, type Token } from 'node-llama-cpp';
import { join } from 'node:path';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes } from '../../lib/gguf/tensor-data.js';
import { writeGguf } from '../../lib/gguf/writer.js';
import type { GgufMetadataInput } from '../../lib/gguf/metadata-encoding.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { LoraSettings } from '../../lib/model/lora-options.js';
import { disposeAll, tensor, type Tensor } from '../../lib/tensor.js';
import { BUILTIN_TEMPLATES } from '../../lib/tokenizer/builtin-templates.js';
import { tokenizerFromGguf } from '../../lib/tokenizer/gguf-vocab.js';
import { sentencePieceGguf } from '../fixtures/tokenizers/hf-to-gguf.js';
import { chatmlLlama2Files } from '../fixtures/tokenizers/real-tokenizers.js';
import type { GgufEntry } from '../fixtures/tokenizers/vocab-gguf.js';
import { saveAdapterFolder } from '../helpers/adapter-folder.js';
import { seededFloats } from '../helpers/reference.js';

export const CHATML = BUILTIN_TEMPLATES.chatml;

export const LORA: LoraSettings = { rank: 4, alpha: 8, targets: 'all-linear', seed: 3 };

/** Writes Llama 2 + ChatML tokenizer.json / tokenizer_config.json (with a ChatML template) into an HF folder. */
export async function addChatmlTokenizer(hfDir: string): Promise<void> {
  const files = chatmlLlama2Files();
  await writeFile(join(hfDir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(hfDir, 'tokenizer_config.json'), JSON.stringify({ ...files.config, chat_template: CHATML }));
}

const TYPED: Record<GgufEntry['type'], string> = { u32: 'uint32', f32: 'float32', bool: 'bool', str: 'string', arr_str: 'string[]', arr_f32: 'float32[]', arr_i32: 'int32[]' };

/** A copy of a GGUF whose tokenizer keys are replaced by the Llama 2 + ChatML vocabulary (as llama.cpp's converter writes it). */
export async function withChatmlVocab(ggufPath: string, outPath: string): Promise<void> {
  const file = await readGguf(ggufPath);
  const metadata = new Map<string, GgufMetadataInput>();
  for (const [k, v] of file.metadata) if (!k.startsWith('tokenizer.')) metadata.set(k, { type: file.metadataTypes.get(k)!, value: v });
  for (const [k, e] of Object.entries(sentencePieceGguf(chatmlLlama2Files(), CHATML))) {
    if (k.startsWith('tokenizer.')) metadata.set(k, { type: TYPED[e.type], value: e.value } as GgufMetadataInput);
  }
  const tensors = [];
  for (const t of file.tensors) tensors.push({ name: t.name, ne: t.ne, type: t.ggmlType, data: await readTensorBytes(file, t) });
  await writeGguf(outPath, { metadata, tensors });
}

/** Gives every LoRA matrix seeded non-zero values (B too, so the adapter changes the model). */
export async function randomizeAdapter(model: LoadedModel, seed = 500): Promise<void> {
  const params = await model.native.loraParameters();
  const updates: Record<string, Tensor> = {};
  let s = seed;
  for (const [name, p] of Object.entries(params)) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, s++).map((x) => x * 0.3), p.shape);
  await model.native.setLoraParameters(updates);
  disposeAll(Object.values(updates), Object.values(params));
}

/** An adapter folder for `base` with random A and B, written as training writes it. */
export async function makeAdapter(base: string, dir: string, seed = 500): Promise<void> {
  const model = await loadModel(base, { quantization: 'none', lora: LORA });
  try {
    await randomizeAdapter(model, seed);
    await saveAdapterFolder(model, dir, LORA);
  } finally {
    model.dispose();
  }
}

let llamaPromise: Promise<Llama> | undefined;

/**
 * llama.cpp's next-token log-probabilities after every prefix of each prompt (row i of a prompt
 * follows its tokens 0..i). node-llama-cpp 3.21 gives no raw logits, only the softmax; log-softmax
 * differs from logits by one constant per row, so comparisons are made in log-softmax.
 */
export async function llamaCppLogProbs(ggufPath: string, prompts: readonly (readonly number[])[]): Promise<Float32Array[]> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  const llama = await llamaPromise;
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({
      contextSize: 128,
      batchSize: 128,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    try {
      const sequence = context.getSequence();
      const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
      const rows: Float32Array[] = [];
      for (const prompt of prompts) {
        await sequence.clearHistory();
        const items = prompt.map((t) => [t as Token, { generateNext: { probabilities: true } }] as const);
        const out = await sequence.controlledEvaluate(items as unknown as Parameters<typeof sequence.controlledEvaluate>[0]);
        prompt.forEach((_, i) => {
          const probs = (out[i]?.next as { probabilities?: Map<Token, number> } | undefined)?.probabilities;
          if (!probs) throw new Error(`llama.cpp gave no probabilities at position ${i}`);
          const row = new Float32Array(vocab).fill(-Infinity);
          for (const [token, p] of probs) row[token] = Math.log(p);
          rows.push(row);
        });
      }
      return rows;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** Rows of logits as log-softmax (float64 accumulation). */
export function logSoftmax(rows: readonly Float32Array[]): Float32Array[] {
  return rows.map((row) => {
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const lse = max + Math.log(sum);
    return Float32Array.from(row, (x) => x - lse);
  });
}

/** tokenizer.json + tokenizer_config.json for a tiny model's HF folder, built from its GGUF's vocabulary. */
export async function addTinyTokenizer(hfDir: string, ggufPath: string): Promise<void> {
  const files = tokenizerFromGguf(await readGguf(ggufPath));
  await writeFile(join(hfDir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(hfDir, 'tokenizer_config.json'), JSON.stringify(files.config));
}
