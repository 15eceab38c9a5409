/**
 * Turns a GGUF file's `tokenizer.ggml.*` vocabulary into the tokenizer.json + tokenizer_config.json
 * pair @huggingface/tokenizers runs, so a model taken from Ollama needs no other file:
 * - `llama` (SentencePiece BPE with scores): merges are every pair of pieces whose concatenation is a
 *   normal piece, ranked by that piece's score, which is the order llama.cpp merges in.
 * - `gpt2` (byte-level BPE): merges come from `tokenizer.ggml.merges`, the split regex from
 *   `tokenizer.ggml.pre`.
 * Control and user-defined tokens become added tokens, so they are matched as wholes in text.
 */
import type { GgufFile } from '../gguf/reader.js';
import {
  optionalBoolean,
  optionalInteger,
  optionalNumberArray,
  optionalString,
  requireNumberArray,
  requireString,
  requireStringArray,
} from '../gguf/metadata.js';
import type { TokenizerConfig, TokenizerJson } from './tokenizer-files.js';

export const GGUF_TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** Pre-tokenizer regexes llama.cpp selects by `tokenizer.ggml.pre` (llama-vocab.cpp). */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const PRE_SPLITS: Record<string, { regex: string; ignoreMerges: boolean }> = {
  'llama-bpe': { regex: LLAMA3_SPLIT, ignoreMerges: true },
  'llama-v3': { regex: LLAMA3_SPLIT, ignoreMerges: true },
  llama3: { regex: LLAMA3_SPLIT, ignoreMerges: true },
  'smaug-bpe': { regex: LLAMA3_SPLIT, ignoreMerges: false },
  default: { regex: GPT2_SPLIT, ignoreMerges: false },
  gpt2: { regex: GPT2_SPLIT, ignoreMerges: false },
  'gpt-2': { regex: GPT2_SPLIT, ignoreMerges: false },
  qwen2: { regex: QWEN2_SPLIT, ignoreMerges: false },
};

export interface GgufTokenizerFiles {
  tokenizer: TokenizerJson;
  config: TokenizerConfig;
}

interface Vocab {
  tokens: string[];
  types: number[];
}

function addedTokens({ tokens, types }: Vocab): TokenizerJson['added_tokens'] {
  const out: TokenizerJson['added_tokens'] = [];
  types.forEach((type, id) => {
    if (type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.userDefined || type === GGUF_TOKEN_TYPE.unknown) {
      out.push({ id, content: tokens[id]!, special: type !== GGUF_TOKEN_TYPE.userDefined, lstrip: false, rstrip: false, normalized: false, single_word: false });
    }
  });
  return out;
}

function vocabObject(tokens: string[]): Record<string, number> {
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  tokens.forEach((t, id) => {
    if (!(t in vocab)) vocab[t] = id;
  });
  return vocab;
}

/** SentencePiece merges from scores: a pair merges if its concatenation is a normal piece. */
export function mergesFromScores(tokens: string[], scores: number[], types: number[]): [string, string][] {
  const normal = new Map<string, number>();
  tokens.forEach((t, id) => {
    if (types[id] === GGUF_TOKEN_TYPE.normal || types[id] === undefined) if (!normal.has(t)) normal.set(t, id);
  });
  const candidates: { left: string; right: string; score: number; id: number; leftId: number }[] = [];
  for (const [piece, id] of normal) {
    const chars = Array.from(piece);
    let left = '';
    for (let k = 1; k < chars.length; k++) {
      left += chars[k - 1]!;
      const right = piece.slice(left.length);
      const leftId = normal.get(left);
      if (leftId !== undefined && normal.has(right)) candidates.push({ left, right, score: scores[id] ?? 0, id, leftId });
    }
  }
  candidates.sort((a, b) => b.score - a.score || a.id - b.id || a.leftId - b.leftId);
  return candidates.map((c) => [c.left, c.right]);
}

function specialConfig(file: GgufFile, tokens: string[], defaultAddBos: boolean): TokenizerConfig {
  const tokenAt = (key: string): string | undefined => {
    const id = optionalInteger(file, key);
    if (id === undefined) return undefined;
    const t = tokens[id];
    if (t === undefined) throw new Error(`${file.path}: ${key} = ${id} is outside the ${tokens.length}-token vocabulary`);
    return t;
  };
  const template = optionalString(file, 'tokenizer.chat_template');
  return {
    bos_token: tokenAt('tokenizer.ggml.bos_token_id'),
    eos_token: tokenAt('tokenizer.ggml.eos_token_id'),
    pad_token: tokenAt('tokenizer.ggml.padding_token_id'),
    unk_token: tokenAt('tokenizer.ggml.unknown_token_id'),
    add_bos_token: optionalBoolean(file, 'tokenizer.ggml.add_bos_token') ?? defaultAddBos,
    add_eos_token: optionalBoolean(file, 'tokenizer.ggml.add_eos_token') ?? false,
    ...(template !== undefined ? { chat_template: template } : {}),
  };
}

function sentencePiece(file: GgufFile, vocab: Vocab): GgufTokenizerFiles {
  const scores = requireNumberArray(file, 'tokenizer.ggml.scores');
  if (scores.length !== vocab.tokens.length) throw new Error(`${file.path}: tokenizer.ggml.scores has ${scores.length} entries for ${vocab.tokens.length} tokens`);
  const addSpacePrefix = optionalBoolean(file, 'tokenizer.ggml.add_space_prefix') ?? true;
  const unkId = optionalInteger(file, 'tokenizer.ggml.unknown_token_id');
  const normalizers: Array<Record<string, unknown>> = [];
  if (addSpacePrefix) normalizers.push({ type: 'Prepend', prepend: '\u2581' });
  normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: '\u2581' });
  const decoders: Array<Record<string, unknown>> = [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (addSpacePrefix) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  return {
    tokenizer: {
      added_tokens: addedTokens(vocab),
      normalizer: { type: 'Sequence', normalizers },
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Sequence', decoders },
      model: {
        type: 'BPE',
        vocab: vocabObject(vocab.tokens),
        merges: mergesFromScores(vocab.tokens, scores, vocab.types),
        byte_fallback: true,
        fuse_unk: true,
        unk_token: unkId !== undefined ? (vocab.tokens[unkId] ?? null) : null,
      },
    },
    config: specialConfig(file, vocab.tokens, true),
  };
}

function byteLevel(file: GgufFile, vocab: Vocab): GgufTokenizerFiles {
  const merges = requireStringArray(file, 'tokenizer.ggml.merges');
  const pre = optionalString(file, 'tokenizer.ggml.pre') ?? 'default';
  const split = PRE_SPLITS[pre];
  if (!split) {
    throw new Error(`${file.path}: tokenizer.ggml.pre = "${pre}" is not supported (known: ${Object.keys(PRE_SPLITS).join(', ')})`);
  }
  return {
    tokenizer: {
      added_tokens: addedTokens(vocab),
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: split.regex }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', vocab: vocabObject(vocab.tokens), merges, byte_fallback: false, ignore_merges: split.ignoreMerges, unk_token: null },
    },
    config: specialConfig(file, vocab.tokens, pre !== 'default'),
  };
}

export function tokenizerFromGguf(file: GgufFile): GgufTokenizerFiles {
  const model = requireString(file, 'tokenizer.ggml.model');
  const tokens = requireStringArray(file, 'tokenizer.ggml.tokens');
  const types = optionalNumberArray(file, 'tokenizer.ggml.token_type') ?? tokens.map(() => GGUF_TOKEN_TYPE.normal);
  if (types.length !== tokens.length) throw new Error(`${file.path}: tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`);
  const vocab = { tokens, types };
  if (model === 'llama') return sentencePiece(file, vocab);
  if (model === 'gpt2') return byteLevel(file, vocab);
  throw new Error(`${file.path}: tokenizer.ggml.model = "${model}" is not supported (expected "llama" or "gpt2")`);
}
