/**
 * A SentencePiece-style tokenizer.json that never inserts the leading `▁` at the start of a text
 * section (no `Prepend` normalizer, Metaspace `prepend_scheme: never`). It encodes text that
 * continues a section mid-way, which boundary-encode.ts needs; a caller that wants the prefix writes
 * a space in front, which both the Replace normalizer and the Metaspace pre-tokenizer turn into the
 * same `▁` the prefix would have been.
 */
import type { ComponentJson, TokenizerJson } from './tokenizer-files.js';

function withoutPrepend(normalizer: ComponentJson | null): ComponentJson | null {
  if (!normalizer) return null;
  if (normalizer.type === 'Prepend') return null;
  if (normalizer.type !== 'Sequence') return normalizer;
  const nested = (normalizer.normalizers as ComponentJson[] | undefined) ?? [];
  return { ...normalizer, normalizers: nested.map(withoutPrepend).filter((n): n is ComponentJson => n !== null) };
}

function neverPrepend(pre: ComponentJson | null): ComponentJson | null {
  if (!pre) return null;
  if (pre.type === 'Metaspace') return { ...pre, prepend_scheme: 'never', add_prefix_space: false };
  if (pre.type !== 'Sequence') return pre;
  const nested = (pre.pretokenizers as ComponentJson[] | undefined) ?? [];
  return { ...pre, pretokenizers: nested.map(neverPrepend) };
}

export function prefixFreeTokenizerJson(json: TokenizerJson): TokenizerJson {
  return { ...json, normalizer: withoutPrepend(json.normalizer), pre_tokenizer: neverPrepend(json.pre_tokenizer) };
}
