/**
 * Maps each token of an encoding back to the byte range of the input text it covers, by walking the
 * tokens' surface bytes against the text. The only differences allowed are the ones tokenizers make
 * on purpose: an inserted leading `▁` at section starts, whitespace an added token strips
 * (lstrip/rstrip), and, for SentencePiece-style vocabularies, a literal `▁` (U+2581) in the text,
 * which the tokenizer cannot tell from a space (llama.cpp and sentencepiece treat it the same way).
 * Anything else means the tokenizer rewrote the text, and we refuse rather than guess a mask.
 */
import type { SurfaceTable } from './surface.js';

export interface TokenOffsets {
  /** Byte offsets into the UTF-8 text, [start, end) per token. */
  starts: Uint32Array;
  ends: Uint32Array;
  /** 1 where the token carries a leading `▁` the tokenizer inserted (it is not in the text). */
  prefixed: Uint8Array;
}

export class OffsetAlignmentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OffsetAlignmentError';
  }
}

/** U+2581 in UTF-8. */
const METASPACE = [0xe2, 0x96, 0x81] as const;

function isSpaceByte(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
}

function utf8Length(lead: number): number {
  return lead < 0x80 ? 1 : lead >> 5 === 0x6 ? 2 : lead >> 4 === 0xe ? 3 : 4;
}

function isMetaspaceAt(text: Uint8Array, p: number): boolean {
  return text[p] === METASPACE[0] && text[p + 1] === METASPACE[1] && text[p + 2] === METASPACE[2];
}

/** Bytes of `text` at `p` that surface byte `b` stands for: 0 when it does not match. */
function matchLength(text: Uint8Array, p: number, b: number, metaspace: boolean): number {
  if (text[p] === b) return 1;
  // The normalizer turned the text's `▁` into the same piece character a space becomes.
  if (metaspace && b === 0x20 && isMetaspaceAt(text, p)) return 3;
  return 0;
}

export function alignTokens(text: Uint8Array, ids: ArrayLike<number>, table: SurfaceTable): TokenOffsets {
  const n = ids.length;
  const starts = new Uint32Array(n);
  const ends = new Uint32Array(n);
  const prefixed = new Uint8Array(n);
  const metaspace = table.kind === 'metaspace';
  let p = 0;
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    const added = table.isAdded[id] === 1;
    let s = table.bytes[id];
    if (s === undefined) throw new OffsetAlignmentError(`token id ${id} is outside the vocabulary`);
    if (!added && s.length > 0 && s[0] === 0x20) {
      const sectionStart = i === 0 || table.isAdded[ids[i - 1]!] === 1;
      const mode = table.prepend;
      // Metaspace pre-tokenizers skip the prefix when the section already starts with `▁` or a space.
      const startsSpaced = text[p] === 0x20 || isMetaspaceAt(text, p);
      const inserted =
        sectionStart &&
        (mode === 'always' ||
          (mode === 'first' && i === 0) ||
          (mode === 'always-unless-space' && !startsSpaced) ||
          (mode === 'first-unless-space' && i === 0 && !startsSpaced));
      if (inserted) {
        s = s.subarray(1);
        prefixed[i] = 1;
      }
    }
    if (!added && id === table.unkId) {
      // An unknown token stands for one character of the text.
      starts[i] = p;
      p = Math.min(text.length, p + utf8Length(text[p] ?? 0));
      ends[i] = p;
      continue;
    }
    let start = -1;
    for (let k = 0; k < s.length; k++) {
      const b = s[k]!;
      while (p < text.length && matchLength(text, p, b, metaspace) === 0 && isSpaceByte(text[p]!)) p++;
      const len = matchLength(text, p, b, metaspace);
      if (len === 0) {
        throw new OffsetAlignmentError(
          `token ${i} (id ${id}) does not match the text at byte ${p}: the tokenizer changed the text in a way offsets cannot follow`,
        );
      }
      if (start < 0) start = p;
      p += len;
    }
    starts[i] = start < 0 ? p : start;
    ends[i] = p;
  }
  while (p < text.length && isSpaceByte(text[p]!)) p++;
  if (p !== text.length) throw new OffsetAlignmentError(`tokens cover ${p} of ${text.length} bytes of the text`);
  return { starts, ends, prefixed };
}
