/**
 * The bytes of input text each token stands for ("surface"), derived from the tokenizer's decoder
 * type, plus where the tokenizer inserts a space that is not in the input. Together they let us map
 * tokens back to byte offsets of the rendered text (see offsets.ts), which is what makes loss masks
 * exact: @huggingface/tokenizers does not report offsets itself.
 */
import { byteLevelDecoder } from './byte-level.js';
import type { ComponentJson, TokenizerJson } from './tokenizer-files.js';

interface Utf8Encoder {
  encode(text: string): Uint8Array;
}

export type SurfaceKind = 'byte-level' | 'metaspace';
/** Where the tokenizer adds a `▁` that the text does not have. */
export type PrependMode = 'none' | 'always' | 'first' | 'always-unless-space' | 'first-unless-space';

export interface SurfaceTable {
  kind: SurfaceKind;
  prepend: PrependMode;
  /** Per token id; added tokens map to their literal content. */
  bytes: Uint8Array[];
  isAdded: Uint8Array;
  unkId: number | undefined;
}

function components(c: ComponentJson | null): ComponentJson[] {
  if (!c) return [];
  const nested = (c.normalizers ?? c.pretokenizers ?? c.decoders ?? c.processors) as ComponentJson[] | undefined;
  return nested ? nested.flatMap(components) : [c];
}

export function surfaceKind(json: TokenizerJson): SurfaceKind {
  const decoders = components(json.decoder);
  const pre = components(json.pre_tokenizer);
  if (decoders.some((d) => d.type === 'ByteLevel') || pre.some((p) => p.type === 'ByteLevel')) return 'byte-level';
  const spaceMarked =
    decoders.some((d) => d.type === 'Metaspace' || (d.type === 'Replace' && JSON.stringify(d.pattern).includes('\u2581'))) ||
    pre.some((p) => p.type === 'Metaspace');
  if (spaceMarked) return 'metaspace';
  throw new Error(
    `unsupported tokenizer: decoder ${json.decoder?.type ?? 'none'} is neither byte-level nor SentencePiece-style (▁ for spaces)`,
  );
}

export function prependMode(json: TokenizerJson): PrependMode {
  const normalizers = components(json.normalizer);
  for (const n of normalizers) {
    if (n.type === 'Prepend' && n.prepend === '\u2581') return 'always';
    if (n.type !== 'Prepend' && n.type !== 'Replace') {
      throw new Error(`unsupported tokenizer: normalizer ${n.type} changes the text, so offsets cannot be mapped`);
    }
  }
  for (const p of components(json.pre_tokenizer)) {
    if (p.type !== 'Metaspace') continue;
    const scheme = (p.prepend_scheme as string | undefined) ?? (p.add_prefix_space === false ? 'never' : 'always');
    if (scheme === 'always') return 'always-unless-space';
    if (scheme === 'first') return 'first-unless-space';
    return 'none';
  }
  return 'none';
}

function metaspaceBytes(piece: string, encoder: Utf8Encoder): Uint8Array {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (m) return Uint8Array.of(parseInt(m[1]!, 16));
  return encoder.encode(piece.replaceAll('\u2581', ' '));
}

function byteLevelBytes(piece: string, table: Map<string, number>, encoder: Utf8Encoder): Uint8Array {
  const out = new Uint8Array(piece.length);
  let n = 0;
  for (const ch of piece) {
    const b = table.get(ch);
    if (b === undefined) return encoder.encode(piece); // not a byte-level piece: take it literally
    out[n++] = b;
  }
  return out.subarray(0, n);
}

export function buildSurfaceTable(json: TokenizerJson, idToToken: (id: number) => string | undefined, size: number): SurfaceTable {
  const kind = surfaceKind(json);
  const encoder = new TextEncoder();
  const table = kind === 'byte-level' ? byteLevelDecoder() : undefined;
  const isAdded = new Uint8Array(size);
  const addedContent = new Map<number, string>();
  for (const t of json.added_tokens) {
    isAdded[t.id] = 1;
    addedContent.set(t.id, t.content);
  }
  const bytes = new Array<Uint8Array>(size);
  const empty = new Uint8Array(0);
  for (let id = 0; id < size; id++) {
    const added = addedContent.get(id);
    if (added !== undefined) {
      bytes[id] = encoder.encode(added);
      continue;
    }
    const piece = idToToken(id);
    if (piece === undefined) bytes[id] = empty;
    else bytes[id] = table ? byteLevelBytes(piece, table, encoder) : metaspaceBytes(piece, encoder);
  }
  const unkName = json.model.unk_token ?? undefined;
  let unkId: number | undefined;
  if (unkName) for (let id = 0; id < size && unkId === undefined; id++) if (idToToken(id) === unkName) unkId = id;
  return { kind, prepend: prependMode(json), bytes, isAdded, unkId };
}
