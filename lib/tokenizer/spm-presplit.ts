/**
 * Speed-up for SentencePiece-style BPE without a pre-tokenizer (Llama 2, Mistral): the library then
 * runs BPE over whole sections of text, which is slow and defeats its word cache. When no vocabulary
 * piece has a `▁` after another character, no merge can cross the start of a `▁`-word, so splitting
 * there first gives the same tokens (checked against llama.cpp in the parity tests). Returns the
 * tokenizer.json unchanged when the vocabulary does not allow it.
 */
import type { TokenizerJson } from './tokenizer-files.js';

export const SPM_WORD_SPLIT = { type: 'Split', pattern: { Regex: '\u2581*[^\u2581]+|\u2581+' }, behavior: 'Isolated', invert: true };

export function withSpmWordSplit(json: TokenizerJson): TokenizerJson {
  if (json.pre_tokenizer !== null) return json;
  const hasSpaceNormalizer = JSON.stringify(json.normalizer ?? {}).includes('\u2581');
  if (!hasSpaceNormalizer) return json;
  const vocab = json.model.vocab;
  const pieces = Array.isArray(vocab) ? vocab.map(([p]) => p) : Object.keys(vocab);
  if (pieces.some((p) => /[^\u2581]\u2581/.test(p))) return json;
  return { ...json, pre_tokenizer: SPM_WORD_SPLIT };
}
