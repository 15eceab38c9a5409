/**
 * Encodes rendered text so that a token boundary falls on every given position (the starts and
 * ends of trained spans), which is what makes loss masks exact: no token is half prompt, half answer.
 *
 * BPE merges across such positions: Mistral's `[/INST]` followed by `(aside)` encodes `](` as one
 * token, so any mask rule either trains a piece of `[/INST]` or leaves the answer's first character
 * untrained. We encode the whole text once and keep it as is wherever no token straddles a position
 * (the common case: those ids are exactly a plain encode of the text). Only a section (the text
 * between two added tokens, which tokenizers encode independently) that has a straddling token is
 * re-encoded in pieces cut at the positions, each piece continuing the section without a new
 * SentencePiece `▁` prefix.
 *
 * The trade-off: in a re-encoded section the ids differ from a plain encode of the rendered text
 * around the cut (`]`, `(` instead of `](`). That is what the model sees at inference time anyway:
 * the prompt is rendered with the generation prompt and tokenized on its own, so it ends in `]`,
 * and the answer starts with a fresh token; training on the merged `](` would teach a token the
 * model never gets to predict after `[/INST]`. The cost is on earlier turns of a multi-turn
 * conversation: at inference they are part of the prompt and re-tokenized whole (`](`), so the
 * model sees a slightly different tokenization of its own past answers than in training. We accept
 * that: it is rare (only at merging punctuation), and an exact mask matters more.
 */
import { OffsetAlignmentError } from './offsets.js';
import type { OffsetEncoding, TextTokenizer } from './text-tokenizer.js';

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Sorted, distinct byte offsets strictly inside the text. */
function byteBoundaries(text: string, positions: readonly number[]): number[] {
  const out = new Set<number>();
  const total = utf8.encode(text).length;
  for (const p of positions) {
    const b = utf8.encode(text.slice(0, p)).length;
    if (b > 0 && b < total) out.add(b);
  }
  return [...out].sort((a, b) => a - b);
}

/** Index of the first token that straddles a boundary, or -1. */
function firstStraddle(enc: OffsetEncoding, boundaries: readonly number[]): number {
  let k = 0;
  for (let t = 0; t < enc.ids.length && k < boundaries.length; t++) {
    const s = enc.starts[t]!;
    const e = enc.ends[t]!;
    while (k < boundaries.length && boundaries[k]! <= s) k++;
    if (k < boundaries.length && boundaries[k]! < e) return t;
  }
  return -1;
}

/**
 * `positions` are UTF-16 offsets into `text`. Throws OffsetAlignmentError when no encoding can put a
 * boundary there (a position inside an added token such as `<|im_end|>`).
 */
export function encodeAtBoundaries(tokenizer: TextTokenizer, text: string, positions: readonly number[]): OffsetEncoding {
  const whole = tokenizer.encodeWithOffsets(text);
  const boundaries = byteBoundaries(text, positions);
  if (firstStraddle(whole, boundaries) < 0) return whole;

  const bytes = utf8.encode(text);
  const out: number[] = [];
  const n = whole.ids.length;
  for (let i = 0; i < n; ) {
    if (tokenizer.isAddedToken(whole.ids[i]!)) {
      out.push(whole.ids[i++]!);
      continue;
    }
    let j = i;
    while (j < n && !tokenizer.isAddedToken(whole.ids[j]!)) j++;
    const from = whole.starts[i]!;
    const to = whole.ends[j - 1]!;
    const cuts = boundaries.filter((b) => b > from && b < to);
    if (cuts.length === 0) {
      for (let t = i; t < j; t++) out.push(whole.ids[t]!);
    } else {
      const edges = [from, ...cuts, to];
      for (let c = 0; c + 1 < edges.length; c++) {
        const piece = fromUtf8.decode(bytes.subarray(edges[c], edges[c + 1]));
        // Only the section's first piece gets the `▁` the whole encode inserted, if it did.
        out.push(...tokenizer.encodeContinuation(piece, c === 0 && whole.prefixed[i] === 1));
      }
    }
    i = j;
  }
  const ids = Int32Array.from(out);
  const encoded = { ids, ...tokenizer.align(bytes, ids) };
  const straddle = firstStraddle(encoded, boundaries);
  if (straddle >= 0) {
    throw new OffsetAlignmentError(
      `token ${straddle} (id ${ids[straddle]}) spans a trained-span boundary and cannot be split (is the boundary inside an added token?)`,
    );
  }
  return encoded;
}
