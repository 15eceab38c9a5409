/** A prepared record as text with its trained tokens marked, for `inspect` and for people reading tests. */
import type { TextTokenizer } from '../tokenizer/text-tokenizer.js';

const TRAINED_ON = '\u001b[1;32m';
const RESET = '\u001b[0m';

/** Rendered text of a record with trained runs wrapped in ANSI green, or ⟦…⟧ without color. */
export function highlightRecord(tokenizer: TextTokenizer, tokens: Int32Array, mask: Uint8Array, color: boolean): string {
  let out = '';
  let start = 0;
  for (let i = 1; i <= tokens.length; i++) {
    if (i < tokens.length && mask[i] === mask[start]) continue;
    const text = tokenizer.surfaceText(tokens, start, i);
    out += mask[start] ? (color ? `${TRAINED_ON}${text}${RESET}` : `⟦${text}⟧`) : text;
    start = i;
  }
  return out;
}
