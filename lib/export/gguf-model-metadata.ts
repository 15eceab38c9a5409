/**
 * The metadata of a model GGUF: `general.*`, the architecture's hyper-parameters with the types
 * llama.cpp's getters insist on, and `tokenizer.*`. A GGUF or Ollama source keeps its own keys
 * (each with its stored type); an HF source has them built from config.json and tokenizer.json.
 */
import type { GgufFile } from '../gguf/reader.js';
import type { GgufMetadataInput } from '../gguf/metadata-encoding.js';
import type { Architecture } from '../model/architecture.js';
import { BUILTIN_TEMPLATES, builtinForOllamaTemplate } from '../tokenizer/builtin-templates.js';
import { hfTokenizerMetadata } from './gguf-tokenizer.js';
import type { WeightSource } from './weight-stream.js';

export interface ModelMetadataOptions {
  /** general.name; default the source's. */
  readonly name?: string;
  /** Replaces the source's tokenizer.chat_template. */
  readonly chatTemplate?: string;
  /** general.file_type (llama_ftype). */
  readonly fileType: number;
  /** Whether any tensor is block-quantized (then general.quantization_version 2 is required). */
  readonly quantized: boolean;
}

/** Keys a copy must not keep: they describe the source file, not the model. */
const FILE_KEYS = new Set(['general.file_type', 'general.quantization_version', 'general.alignment', 'general.name']);

/** The GGUF architecture name: llama.cpp runs Llama and Mistral as `llama`. */
export function ggufArchitectureName(a: Architecture): 'llama' | 'qwen2' {
  return a.family === 'qwen2' ? 'qwen2' : 'llama';
}

function copiedKeys(file: GgufFile, arch: string): Map<string, GgufMetadataInput> {
  const out = new Map<string, GgufMetadataInput>();
  for (const [key, value] of file.metadata) {
    const keep = key.startsWith('general.') ? !FILE_KEYS.has(key) : key.startsWith(`${arch}.`) || key.startsWith('tokenizer.');
    if (!keep) continue;
    const type = file.metadataTypes.get(key);
    out.set(key, type === undefined ? value : { type, value });
  }
  return out;
}

/** `<arch>.*` hyper-parameters as llama.cpp's LlamaModel/Qwen2Model converters write them. */
export function hyperParameters(a: Architecture, vocabRows: number): Map<string, GgufMetadataInput> {
  const arch = ggufArchitectureName(a);
  const k = (name: string) => `${arch}.${name}`;
  const out = new Map<string, GgufMetadataInput>([
    [k('vocab_size'), vocabRows],
    [k('context_length'), a.maxPositionEmbeddings ?? 4096],
    [k('embedding_length'), a.hiddenSize],
    [k('block_count'), a.numLayers],
    [k('feed_forward_length'), a.intermediateSize],
    [k('rope.dimension_count'), a.headDim],
    [k('attention.head_count'), a.numHeads],
    [k('attention.head_count_kv'), a.numKvHeads],
    [k('attention.layer_norm_rms_epsilon'), { type: 'float32', value: a.rmsNormEps }],
    [k('rope.freq_base'), { type: 'float32', value: a.ropeTheta }],
  ]);
  if (a.headDim * a.numHeads !== a.hiddenSize) {
    out.set(k('attention.key_length'), a.headDim);
    out.set(k('attention.value_length'), a.headDim);
  }
  if (a.ropePositionScale !== 1) {
    out.set(k('rope.scaling.type'), 'linear');
    out.set(k('rope.scaling.factor'), { type: 'float32', value: 1 / a.ropePositionScale });
  }
  if (a.slidingWindow !== undefined) out.set(k('attention.sliding_window'), a.slidingWindow);
  return out;
}

/** Every metadata key of the exported model, general.* first. */
export async function modelMetadata(src: WeightSource, o: ModelMetadataOptions): Promise<Map<string, GgufMetadataInput>> {
  const arch = ggufArchitectureName(src.architecture);
  const out = new Map<string, GgufMetadataInput>([
    ['general.architecture', arch],
    ['general.type', 'model'],
    ['general.name', o.name ?? src.displayName],
    ['general.file_type', { type: 'uint32', value: o.fileType }],
  ]);
  if (o.quantized) out.set('general.quantization_version', { type: 'uint32', value: 2 });
  const embedding = src.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embedding) throw new Error(`${src.source.path}: no token embedding tensor`);
  const vocabRows = embedding.shape[0]!;
  if (src.gguf) {
    for (const [k, v] of copiedKeys(src.gguf, arch)) if (!out.has(k)) out.set(k, v);
    if (o.chatTemplate !== undefined) out.set('tokenizer.chat_template', o.chatTemplate);
    else if (!out.has('tokenizer.chat_template') && src.source.kind === 'ollama' && src.source.ollama.template) {
      // Ollama keeps the template as a Go template layer; the Jinja one it matches goes in the file.
      const builtin = builtinForOllamaTemplate(src.source.ollama.template);
      if (builtin) out.set('tokenizer.chat_template', BUILTIN_TEMPLATES[builtin]);
    }
    if (!out.has('tokenizer.ggml.tokens')) throw new Error(`${src.gguf.path}: no tokenizer.ggml.tokens, so llama.cpp could not load the export`);
    return out;
  }
  for (const [k, v] of hyperParameters(src.architecture, vocabRows)) out.set(k, v);
  const tokenizer = await hfTokenizerMetadata({ dir: src.source.path, vocabRows, ...(src.hfConfig ? { hfConfig: src.hfConfig } : {}) }, o.chatTemplate);
  for (const [k, v] of tokenizer) out.set(k, v);
  return out;
}
