/**
 * Record → token ids + per-token loss mask. The mask marks the tokens inside a trained span of the
 * rendered text: each trained assistant content plus the end-of-turn token the template writes right
 * after it, so the model learns to stop. The text is encoded so that token boundaries fall on the
 * span edges (boundary-encode.ts), so "inside" is exact: no prompt byte is trained, no answer byte
 * is left out.
 */
import type { ChatMessage, RecordBody } from './conversation.js';
import { encodeAtBoundaries } from './boundary-encode.js';
import type { ChatTemplate } from './chat-template.js';
import { renderWithSpans } from './span-render.js';
import type { TextTokenizer } from './text-tokenizer.js';

/**
 * Which tokens are supervised:
 * - `assistant` (default): every assistant turn whose weight is not 0;
 * - `last-assistant`: only the final assistant turn (if its weight is not 0);
 * - `all`: every token ("train on prompt"), except turns with weight 0.
 */
export type TrainOn = 'assistant' | 'last-assistant' | 'all';

export interface EncodedRecord {
  ids: Int32Array;
  /** 1 where the token is a supervised prediction target. */
  mask: Uint8Array;
  /** The rendered text the ids encode (after BOS, if one was added as an id). */
  text: string;
}

/** End-of-turn tokens of the common templates; only those in the vocabulary are used. */
const KNOWN_END_TOKENS = ['<|im_end|>', '<|eot_id|>', '<|eom_id|>', '<|end|>', '</s>', '<|endoftext|>', '<end_of_turn>', '<|end_of_text|>'];

export class ConversationEncoder {
  private readonly endTokens: string[];
  private readonly encoder = new TextEncoder();

  constructor(
    readonly tokenizer: TextTokenizer,
    readonly template: ChatTemplate,
    extraEndTokens: readonly string[] = [],
  ) {
    const candidates = [...extraEndTokens, ...(tokenizer.eosToken ? [tokenizer.eosToken] : []), ...KNOWN_END_TOKENS];
    this.endTokens = [...new Set(candidates)].filter((t) => tokenizer.tokenId(t) !== undefined).sort((a, b) => b.length - a.length);
  }

  encode(body: RecordBody, trainOn: TrainOn = 'assistant'): EncodedRecord {
    return body.kind === 'text' ? this.encodeText(body.text) : this.encodeChat(body.messages, trainOn);
  }

  private withBos(ids: Int32Array, mask: Uint8Array): { ids: Int32Array; mask: Uint8Array } {
    const bos = this.tokenizer.bosId;
    if (!this.tokenizer.addBos || bos === undefined || ids[0] === bos) return { ids, mask };
    const outIds = new Int32Array(ids.length + 1);
    outIds[0] = bos;
    outIds.set(ids, 1);
    const outMask = new Uint8Array(mask.length + 1);
    outMask.set(mask, 1);
    return { ids: outIds, mask: outMask };
  }

  private encodeText(text: string): EncodedRecord {
    const body = this.tokenizer.encode(text);
    const eos = this.tokenizer.eosId;
    const ids = new Int32Array(body.length + (eos === undefined ? 0 : 1));
    ids.set(body);
    if (eos !== undefined) ids[body.length] = eos;
    return { ...this.withBos(ids, new Uint8Array(ids.length).fill(1)), text };
  }

  private encodeChat(messages: readonly ChatMessage[], trainOn: TrainOn): EncodedRecord {
    const trained = new Set<number>();
    const excluded = new Set<number>();
    const lastAssistant = messages.findLastIndex((m) => m.role === 'assistant');
    messages.forEach((m, i) => {
      if (m.role === 'assistant' && m.weight === 0) excluded.add(i);
      else if (m.role === 'assistant' && (trainOn !== 'last-assistant' || i === lastAssistant)) trained.add(i);
    });
    const marked = new Set([...trained, ...excluded]);
    const { text, spans } = renderWithSpans(this.template, messages, marked);
    // UTF-16 [start, end) of each marked span, extended over its end-of-turn token.
    const ranges = spans.map((s) => ({ message: s.message, start: s.start, end: this.endOfTurn(text, s.end) }));
    const { ids, starts } = encodeAtBoundaries(this.tokenizer, text, ranges.flatMap((r) => [r.start, r.end]));
    const mask = new Uint8Array(ids.length);

    const byteRanges = (indices: Set<number>): Array<[number, number]> =>
      ranges.filter((r) => indices.has(r.message)).map((r) => [this.byteOffset(text, r.start), this.byteOffset(text, r.end)]);

    if (trainOn === 'all') {
      mask.fill(1);
      setInside(mask, starts, byteRanges(excluded), 0);
    } else {
      setInside(mask, starts, byteRanges(trained), 1);
    }
    return { ...this.withBos(ids, mask), text };
  }

  /** Extends a content span over the end-of-turn token written right after it, if any. */
  private endOfTurn(text: string, end: number): number {
    for (const t of this.endTokens) if (text.startsWith(t, end)) return end + t.length;
    return end;
  }

  private byteOffset(text: string, utf16: number): number {
    return this.encoder.encode(text.slice(0, utf16)).length;
  }
}

/**
 * Sets the tokens inside each byte range. Token boundaries fall on range edges (encodeAtBoundaries),
 * so no token is partly inside; a token with no bytes (an inserted `▁`) belongs where it starts.
 */
function setInside(mask: Uint8Array, starts: Uint32Array, ranges: Array<[number, number]>, value: 0 | 1): void {
  if (ranges.length === 0) return;
  ranges.sort((a, b) => a[0] - b[0]);
  // Tokens and ranges are both in text order: one forward sweep.
  let r = 0;
  for (let t = 0; t < mask.length && r < ranges.length; t++) {
    const s = starts[t]!;
    while (r < ranges.length && ranges[r]![1] <= s) r++;
    const range = ranges[r];
    if (!range) break;
    if (s >= range[0] && s < range[1]) mask[t] = value;
  }
}
