import type { GgufValueType } from './value-type.js';

/**
 * The types llama.cpp insists on for well-known keys: it reads them with type-checked getters
 * that throw or abort on a mismatch (e.g. `llama.rope.freq_base` must be float32 even when it is
 * 1000000, and counts must be uint32 although the spec prose suggests uint64). The writer uses
 * these when a caller passes a plain JS value for such a key.
 */
const EXACT: ReadonlyMap<string, GgufValueType> = new Map<string, GgufValueType>([
  ['general.alignment', 'uint32'],
  ['general.file_type', 'uint32'],
  ['general.quantization_version', 'uint32'],
  ['adapter.lora.alpha', 'float32'],
  ['adapter.alora.invocation_tokens', 'uint32[]'],
  ['tokenizer.ggml.tokens', 'string[]'],
  ['tokenizer.ggml.merges', 'string[]'],
  ['tokenizer.ggml.scores', 'float32[]'],
  ['tokenizer.ggml.token_type', 'int32[]'],
]);

const SUFFIX: readonly (readonly [RegExp, GgufValueType])[] = [
  [/^tokenizer\.ggml\.[a-z_]+_token_id$/, 'uint32'],
  [/^tokenizer\.ggml\.(add_bos_token|add_eos_token|add_space_prefix|remove_extra_whitespaces)$/, 'bool'],
  [
    /^[a-z0-9_]+\.(context_length|embedding_length|block_count|feed_forward_length|vocab_size|expert_count|expert_used_count|attention\.head_count|attention\.head_count_kv|attention\.key_length|attention\.value_length|attention\.sliding_window|rope\.dimension_count|rope\.scaling\.original_context_length)$/,
    'uint32',
  ],
  [
    /^[a-z0-9_]+\.(rope\.freq_base|rope\.scale_linear|rope\.scaling\.factor|attention\.layer_norm_epsilon|attention\.layer_norm_rms_epsilon|logit_scale)$/,
    'float32',
  ],
];

export function knownKeyType(key: string): GgufValueType | undefined {
  const exact = EXACT.get(key);
  if (exact !== undefined) return exact;
  for (const [re, type] of SUFFIX) if (re.test(key)) return type;
  return undefined;
}
