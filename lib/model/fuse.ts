/**
 * Fuse: the base weights dequantized, with the adapter merged into every adapted linear
 * (W + scale·(A·B)ᵀ), written as a dense HF folder (config.json + sharded safetensors) that any
 * HF-layout loader — this one, mlx-lm, llama.cpp's converter — reads as a plain model.
 */
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { readGguf } from '../gguf/reader.js';
import { saveSafetensors } from '../io/safetensors.js';
import { astype, disposeAll, tensor, toTypedArray, type DType, type Tensor } from '../tensor.js';
import { BUILTIN_TEMPLATES, builtinForOllamaTemplate } from '../tokenizer/builtin-templates.js';
import { tokenizerFromGguf } from '../tokenizer/gguf-vocab.js';
import { replaceFolderAtomically } from '../io/atomic-folder.js';
import { hfRowOfGgufRow } from '../gguf/tensor-names.js';
import type { Architecture } from './architecture.js';
import type { LoadedModel } from './load-model.js';

export interface FuseOptions {
  /** Dtype of the written weights; float16 by default, as most HF checkpoints are. */
  dtype?: Extract<DType, 'float16' | 'bfloat16' | 'float32'>;
  /** A shard is closed once it holds this many bytes (default 2 GiB), so memory stays bounded. */
  shardBytes?: number;
  /** Replace an existing output folder. */
  overwrite?: boolean;
}

export interface FuseResult {
  dir: string;
  files: string[];
  tensors: number;
  bytes: number;
}

/** Files of an HF source folder that describe the tokenizer and generation, copied unchanged. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'generation_config.json', 'chat_template.jinja'];

const BYTES_PER: Record<NonNullable<FuseOptions['dtype']>, number> = { float16: 2, bfloat16: 2, float32: 4 };


/** Rows of a q/k weight ([rows, cols]) or bias ([rows]) from GGUF order to HF order. */
async function unpermuteRows(t: Tensor, heads: number, dtype: DType): Promise<Tensor> {
  const rows = t.shape[0]!;
  const cols = t.shape[1] ?? 1;
  const src = (await toTypedArray(t)) as Float32Array;
  const out = new Float32Array(src.length);
  const hfRow = hfRowOfGgufRow(rows, heads);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols, (r + 1) * cols), hfRow[r]! * cols);
  const dense = await tensor(out, [...t.shape]);
  try {
    return await astype(dense, dtype);
  } finally {
    dense.dispose();
  }
}

function headsOfPermutedWeight(name: string, a: Architecture): number | undefined {
  if (!a.ropeTraditional) return undefined;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(name)) return a.numHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(name)) return a.numKvHeads;
  return undefined;
}

/** config.json for the fused folder: the source's own (quantization dropped) or one built from the architecture. */
async function fusedConfig(model: LoadedModel, dtype: DType): Promise<Record<string, unknown>> {
  const torchDtype = dtype === 'float32' ? 'float32' : dtype;
  if (model.source.kind === 'hf') {
    const own = JSON.parse(await readFile(join(model.source.path, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete own.quantization;
    delete own.quantization_config;
    return { ...own, torch_dtype: torchDtype };
  }
  const a = model.architecture;
  if (a.ropePeriods) {
    // GGUF stores llama3-style scaling as a rope_freqs tensor with no record of the parameters
    // config.json expresses it with; writing it without them would change the model silently.
    throw new Error(`fuse: ${model.source.path} uses per-pair RoPE frequencies (rope_freqs), which a config.json cannot express`);
  }
  if (a.family === 'qwen2') {
    throw new Error(`fuse: writing a qwen2 GGUF model as an HF folder is not supported`);
  }
  return {
    architectures: [a.family === 'mistral' ? 'MistralForCausalLM' : 'LlamaForCausalLM'],
    model_type: a.family,
    vocab_size: a.vocabSize,
    hidden_size: a.hiddenSize,
    intermediate_size: a.intermediateSize,
    num_hidden_layers: a.numLayers,
    num_attention_heads: a.numHeads,
    num_key_value_heads: a.numKvHeads,
    head_dim: a.headDim,
    rms_norm_eps: a.rmsNormEps,
    rope_theta: a.ropeTheta,
    ...(a.ropePositionScale !== 1 ? { rope_scaling: { type: 'linear', factor: 1 / a.ropePositionScale } } : {}),
    tie_word_embeddings: a.tieWordEmbeddings,
    ...(a.slidingWindow !== undefined ? { sliding_window: a.slidingWindow } : {}),
    ...(a.maxPositionEmbeddings !== undefined ? { max_position_embeddings: a.maxPositionEmbeddings } : {}),
    torch_dtype: torchDtype,
  };
}

/**
 * A GGUF base carries its vocabulary in its metadata: tokenizer.json and tokenizer_config.json
 * (special tokens, add_bos, chat template) are built from it so the fused folder is complete. An
 * Ollama model without tokenizer.chat_template gets the built-in template its Go template matches.
 */
async function writeTokenizerFromGguf(source: LoadedModel['source'], dir: string): Promise<void> {
  const { tokenizer, config } = tokenizerFromGguf(await readGguf(source.path));
  if (config.chat_template === undefined && source.kind === 'ollama' && source.ollama.template) {
    const builtin = builtinForOllamaTemplate(source.ollama.template);
    if (builtin) config.chat_template = BUILTIN_TEMPLATES[builtin];
  }
  await writeFile(join(dir, 'tokenizer.json'), `${JSON.stringify(tokenizer)}\n`);
  await writeFile(join(dir, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Writes the fused model (LoRA enabled on `model` is what gets merged) into `outDir`, built in a
 * temporary sibling folder and swapped into place, so a failure leaves no half-written model.
 */
export async function writeFusedModel(model: LoadedModel, outDir: string, options: FuseOptions = {}): Promise<FuseResult> {
  const dtype = options.dtype ?? 'float16';
  const shardBytes = options.shardBytes ?? 2 * 1024 ** 3;
  const target = resolve(outDir);
  if ((await stat(target).catch(() => undefined)) && !options.overwrite) {
    throw new Error(`fuse: ${target} already exists (pass overwrite to replace it)`);
  }
  const config = await fusedConfig(model, dtype);
  await mkdir(dirname(target), { recursive: true });
  const names = (await model.native.weightNames()).filter((n) => !(config.tie_word_embeddings === true && n === 'lm_head.weight'));
  const files: string[] = [];
  let total = 0;
  await replaceFolderAtomically(dirname(target), basename(target), async (temp) => {
    const shards: string[][] = [];
    let current: Record<string, Tensor> = {};
    let currentBytes = 0;
    const flush = async () => {
      const shardNames = Object.keys(current);
      if (shardNames.length === 0) return;
      await saveSafetensors(join(temp, `shard-${shards.length}.safetensors`), current, { format: 'pt' });
      shards.push(shardNames);
      disposeAll(Object.values(current));
      current = {};
      currentBytes = 0;
    };
    try {
      for (const name of names) {
        const heads = headsOfPermutedWeight(name, model.architecture);
        let t: Tensor;
        if (heads === undefined) t = await model.native.denseWeight(name, dtype);
        else {
          const f32 = await model.native.denseWeight(name, 'float32');
          try {
            t = await unpermuteRows(f32, heads, dtype);
          } finally {
            f32.dispose();
          }
        }
        const bytes = t.shape.reduce((p, d) => p * d, 1) * BYTES_PER[dtype];
        if (currentBytes > 0 && currentBytes + bytes > shardBytes) await flush();
        current[name] = t;
        currentBytes += bytes;
        total += bytes;
      }
      await flush();
    } finally {
      disposeAll(Object.values(current));
    }
    // Final names once the count is known: model.safetensors, or HF's "-0000i-of-0000n" shards.
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < shards.length; i++) {
      const file = shards.length === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      await rename(join(temp, `shard-${i}.safetensors`), join(temp, file));
      files.push(file);
      for (const n of shards[i]!) weightMap[n] = file;
    }
    if (shards.length > 1) {
      await writeFile(join(temp, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
    }
    await writeFile(join(temp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    if (model.source.kind === 'hf') {
      for (const f of TOKENIZER_FILES) {
        const from = join(model.source.path, f);
        if (await stat(from).catch(() => undefined)) await copyFile(from, join(temp, f));
      }
    } else {
      await writeTokenizerFromGguf(model.source, temp);
    }
  });
  return { dir: target, files, tensors: names.length, bytes: total };
}
