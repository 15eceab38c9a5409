/**
 * Our tokenizer: @huggingface/tokenizers does the encoding; this class adds what training needs on
 * top: special-token ids, byte offsets per token (for masks), exact per-token bytes (for display),
 * and a fingerprint of the vocabulary for manifests.
 */
import { createHash } from 'node:crypto';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { alignTokens, type TokenOffsets } from './offsets.js';
import { prefixFreeTokenizerJson } from './prefix-free.js';
import { withSpmWordSplit } from './spm-presplit.js';
import { buildSurfaceTable, type SurfaceTable } from './surface.js';
import type { TokenizerConfig, TokenizerJson } from './tokenizer-files.js';

export interface TokenizerSpec {
  tokenizer: TokenizerJson;
  config: TokenizerConfig;
  /** Human-readable origin (a path or an Ollama name), for messages and manifests. */
  source: string;
}

export interface OffsetEncoding extends TokenOffsets {
  ids: Int32Array;
}

export class TextTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** sha256 of the tokenizer and config JSON: same hash, same token ids. */
  readonly fingerprint: string;
  private readonly hf: HfTokenizer;
  /** Built on first use: most records never need it (see encodeContinuation). */
  private prefixFree: HfTokenizer | undefined;
  private readonly fastJson: TokenizerJson;
  private readonly surfaces: SurfaceTable;
  private readonly added: Map<string, number>;
  private readonly encoder = new TextEncoder();

  constructor(readonly spec: TokenizerSpec) {
    const fast = withSpmWordSplit(spec.tokenizer);
    this.fastJson = fast;
    this.hf = new HfTokenizer(fast, { ...spec.config, clean_up_tokenization_spaces: false });
    this.added = new Map(spec.tokenizer.added_tokens.map((t) => [t.content, t.id]));
    let size = 0;
    for (const id of this.hf.get_vocab(true).values()) size = Math.max(size, id + 1);
    this.vocabSize = size;
    this.surfaces = buildSurfaceTable(spec.tokenizer, (id) => this.hf.id_to_token(id), size);
    const idOf = (token: string | undefined) => (token === undefined ? undefined : this.tokenId(token));
    this.bosToken = spec.config.bos_token;
    this.eosToken = spec.config.eos_token;
    this.bosId = idOf(this.bosToken);
    this.eosId = idOf(this.eosToken);
    this.padId = idOf(spec.config.pad_token);
    if (this.bosToken !== undefined && this.bosId === undefined) throw new Error(`${spec.source}: bos_token ${this.bosToken} is not in the vocabulary`);
    if (this.eosToken !== undefined && this.eosId === undefined) throw new Error(`${spec.source}: eos_token ${this.eosToken} is not in the vocabulary`);
    this.addBos = spec.config.add_bos_token ?? postProcessorAddsBos(spec.tokenizer, this.bosToken);
    this.addEos = spec.config.add_eos_token ?? false;
    // Only what decides token ids: the chat template is hashed separately (ChatTemplate.sha256).
    const idConfig = { bos: this.bosToken, eos: this.eosToken, pad: spec.config.pad_token, unk: spec.config.unk_token, addBos: this.addBos, addEos: this.addEos };
    this.fingerprint = createHash('sha256').update(JSON.stringify(spec.tokenizer)).update(JSON.stringify(idConfig)).digest('hex');
  }

  /** Token id of a piece or added token, if the vocabulary has it. */
  tokenId(token: string): number | undefined {
    return this.added.get(token) ?? this.hf.token_to_id(token);
  }

  isAddedToken(id: number): boolean {
    return this.surfaces.isAdded[id] === 1;
  }

  /** Ids of text as is: added tokens in the text are recognised, no BOS/EOS is added. */
  encode(text: string): Int32Array {
    return Int32Array.from(this.hf.encode(text, { add_special_tokens: false }).ids);
  }

  encodeWithOffsets(text: string): OffsetEncoding {
    const ids = this.encode(text);
    return { ids, ...this.align(this.encoder.encode(text), ids) };
  }

  /** Byte offsets of `ids` in the UTF-8 `text` they encode (throws OffsetAlignmentError). */
  align(text: Uint8Array, ids: ArrayLike<number>): TokenOffsets {
    return alignTokens(text, ids, this.surfaces);
  }

  /**
   * Ids of text that continues a section mid-way (it holds no added tokens): unlike `encode`, no
   * SentencePiece `▁` is inserted at its start unless `prefix` asks for the one the whole text got.
   */
  encodeContinuation(text: string, prefix: boolean): Int32Array {
    if (this.surfaces.prepend === 'none') return this.encode(text);
    this.prefixFree ??= new HfTokenizer(prefixFreeTokenizerJson(this.fastJson), { ...this.spec.config, clean_up_tokenization_spaces: false });
    return Int32Array.from(this.prefixFree.encode(prefix ? ` ${text}` : text, { add_special_tokens: false }).ids);
  }

  /** The exact bytes a token stands for in input text (added tokens: their content). */
  tokenBytes(id: number): Uint8Array {
    return this.surfaces.bytes[id] ?? new Uint8Array(0);
  }

  /**
   * The text tokens `ids[from..to)` stand for, by concatenating their surfaces: exact for any slice,
   * unlike decoder rules. The space a SentencePiece tokenizer inserts at the start of a section
   * (sequence start, or after an added token like BOS) is left out, so a run decodes to the text
   * that was encoded.
   */
  surfaceText(ids: ArrayLike<number>, from = 0, to = ids.length): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (let i = from; i < to; i++) {
      let b = this.tokenBytes(ids[i]!);
      const sectionStart = i === 0 || this.isAddedToken(ids[i - 1]!);
      if (sectionStart && this.surfaces.prepend !== 'none' && !this.isAddedToken(ids[i]!) && b[0] === 0x20) b = b.subarray(1);
      parts.push(b);
      n += b.length;
    }
    const all = new Uint8Array(n);
    let o = 0;
    for (const b of parts) {
      all.set(b, o);
      o += b.length;
    }
    return new TextDecoder().decode(all);
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return '';
    return this.hf.decode(Array.from(ids), { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
}

function postProcessorAddsBos(json: TokenizerJson, bos: string | undefined): boolean {
  if (!bos || !json.post_processor) return false;
  return JSON.stringify(json.post_processor).includes(JSON.stringify(bos));
}
