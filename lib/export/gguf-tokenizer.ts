/**
 * `tokenizer.ggml.*` metadata from an HF folder's tokenizer.json + tokenizer_config.json, as
 * llama.cpp's converter writes it:
 * - SentencePiece-style BPE (Llama 2, Mistral: `▁` pieces, `<0x0A>` byte fallback) → model `llama`
 *   with tokens, scores and token types. tokenizer.json has no SentencePiece scores; a piece is
 *   scored by the rank of the first merge that forms it, so llama.cpp's highest-score-first merging
 *   follows the same order as the BPE merges the HF tokenizer runs.
 * - byte-level BPE (Llama 3, Qwen2) → model `gpt2` with tokens, token types, merges and the
 *   `tokenizer.ggml.pre` name llama.cpp selects its split regex by.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GgufMetadataInput } from '../gguf/metadata-encoding.js';
import { GGUF_TOKEN_TYPE } from '../tokenizer/gguf-vocab.js';
import { configChatTemplate, parseTokenizerConfig, parseTokenizerJson, type TokenizerConfig, type TokenizerJson } from '../tokenizer/tokenizer-files.js';

export interface HfTokenizerSource {
  /** The HF folder holding tokenizer.json. */
  readonly dir: string;
  /** Rows of the embedding matrix: the token list is padded to this many with `[PADi]`. */
  readonly vocabRows: number;
  /** config.json, for bos/eos ids when tokenizer_config.json names none. */
  readonly hfConfig?: Record<string, unknown>;
}

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: ${e.code === 'ENOENT' ? 'not found (an HF base needs its tokenizer.json to be exported to GGUF)' : e.message}`);
  });
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new Error(`${path}: invalid JSON (${(error as Error).message})`);
  }
}

interface TokenTable {
  tokens: string[];
  types: number[];
  /** Ids listed in added_tokens. */
  added: Set<number>;
}

function component(json: TokenizerJson, key: 'pre_tokenizer' | 'normalizer' | 'post_processor' | 'decoder'): Record<string, unknown>[] {
  const c = json[key] as Record<string, unknown> | null;
  if (!c) return [];
  const inner = (c.pretokenizers ?? c.normalizers ?? c.processors ?? c.decoders) as Record<string, unknown>[] | undefined;
  return c.type === 'Sequence' && Array.isArray(inner) ? inner : [c];
}

function isByteLevel(json: TokenizerJson): boolean {
  return component(json, 'pre_tokenizer').some((p) => p.type === 'ByteLevel') || component(json, 'decoder').some((d) => d.type === 'ByteLevel');
}

function tokenTable(json: TokenizerJson, where: string, vocabRows: number, byteLevel: boolean): TokenTable {
  const vocab = json.model.vocab;
  if (Array.isArray(vocab)) throw new Error(`${where}: a Unigram vocabulary cannot be exported to GGUF (only BPE)`);
  let size = vocabRows;
  for (const id of Object.values(vocab)) size = Math.max(size, id + 1);
  for (const t of json.added_tokens) size = Math.max(size, t.id + 1);
  if (size > vocabRows) throw new Error(`${where}: the vocabulary has ${size} tokens but the model's embedding has ${vocabRows} rows`);
  const tokens = new Array<string>(size);
  const types = new Array<number>(size).fill(GGUF_TOKEN_TYPE.normal);
  for (const [piece, id] of Object.entries(vocab)) tokens[id] = piece;
  const added = new Set<number>();
  for (const t of json.added_tokens) {
    tokens[t.id] = t.content;
    added.add(t.id);
    types[t.id] = t.special || /^<\|.*\|>$/.test(t.content) ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined;
  }
  const unk = json.model.unk_token ?? undefined;
  for (let id = 0; id < size; id++) {
    const token = tokens[id];
    if (token === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = GGUF_TOKEN_TYPE.unused;
    } else if (!byteLevel && token === unk) {
      types[id] = GGUF_TOKEN_TYPE.unknown;
    } else if (!byteLevel && !added.has(id) && json.model.byte_fallback === true && /^<0x[0-9A-F]{2}>$/.test(token)) {
      types[id] = GGUF_TOKEN_TYPE.byte;
    }
  }
  return { tokens, types, added };
}

function mergeStrings(json: TokenizerJson): string[] {
  return (json.model.merges ?? []).map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
}

/** Scores for llama.cpp's SentencePiece merging: minus the rank of the first merge forming each piece. */
function spmScores(json: TokenizerJson, table: TokenTable): number[] {
  const merges = json.model.merges ?? [];
  const rankOf = new Map<string, number>();
  merges.forEach((m, rank) => {
    const piece = typeof m === 'string' ? m.replace(' ', '') : m[0] + m[1];
    if (!rankOf.has(piece)) rankOf.set(piece, rank);
  });
  return table.tokens.map((t, id) => {
    if (table.added.has(id) || table.types[id] === GGUF_TOKEN_TYPE.unused) return -1000;
    if (table.types[id] !== GGUF_TOKEN_TYPE.normal) return 0;
    return -(rankOf.get(t) ?? merges.length + id);
  });
}

/** The `tokenizer.ggml.pre` llama.cpp needs for this split regex (src/llama-vocab.cpp). */
function preTokenizerName(json: TokenizerJson, where: string): string {
  const splits = component(json, 'pre_tokenizer').filter((p) => p.type === 'Split');
  const regex = splits.map((p) => ((p.pattern as { Regex?: string } | undefined)?.Regex ?? '')).join('');
  if (regex.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && regex.includes('[^\\r\\n\\p{L}\\p{N}]?\\p{L}+')) {
    if (regex.includes('\\p{N}{1,3}')) return 'llama-bpe';
    if (/\\p\{N\}\|/.test(regex)) return 'qwen2';
  }
  const byteLevel = component(json, 'pre_tokenizer').find((p) => p.type === 'ByteLevel');
  if (splits.length === 0 && byteLevel && byteLevel.use_regex !== false) return 'gpt-2';
  throw new Error(`${where}: the byte-level pre-tokenizer is not one llama.cpp knows (Llama 3, Qwen2 or GPT-2 splitting)`);
}

/** Whether text gets a leading `▁` (llama.cpp's add_space_prefix, true by default). */
function addsSpacePrefix(json: TokenizerJson): boolean {
  if (component(json, 'normalizer').some((n) => n.type === 'Prepend' && n.prepend === '\u2581')) return true;
  const meta = component(json, 'pre_tokenizer').find((p) => p.type === 'Metaspace');
  if (meta) return meta.prepend_scheme !== undefined ? meta.prepend_scheme !== 'never' : meta.add_prefix_space !== false;
  return false;
}

/** BOS/EOS added by the post-processor's single-sequence template, when tokenizer_config.json does not say. */
function templateAdds(json: TokenizerJson, token: string | undefined, at: 'first' | 'last'): boolean | undefined {
  const tp = component(json, 'post_processor').find((p) => p.type === 'TemplateProcessing');
  if (!tp || token === undefined) return undefined;
  const single = (tp.single ?? []) as { SpecialToken?: { id: string } }[];
  const piece = at === 'first' ? single[0] : single[single.length - 1];
  return piece?.SpecialToken?.id === token;
}

function specialIds(table: TokenTable, config: TokenizerConfig, hfConfig: Record<string, unknown> | undefined, where: string): Map<string, number> {
  const idOf = new Map<string, number>();
  table.tokens.forEach((t, id) => {
    if (!idOf.has(t) || table.added.has(id)) idOf.set(t, id);
  });
  const out = new Map<string, number>();
  const pick = (key: string, token: string | undefined, fallback: unknown): void => {
    if (token !== undefined) {
      const id = idOf.get(token);
      if (id === undefined) throw new Error(`${where}: ${key.replace(/_id$/, '')} '${token}' is not in the vocabulary`);
      out.set(`tokenizer.ggml.${key}`, id);
    } else if (typeof fallback === 'number' && Number.isInteger(fallback) && fallback >= 0 && fallback < table.tokens.length) {
      out.set(`tokenizer.ggml.${key}`, fallback);
    }
  };
  const eosFallback = Array.isArray(hfConfig?.eos_token_id) ? (hfConfig.eos_token_id as unknown[])[0] : hfConfig?.eos_token_id;
  pick('bos_token_id', config.bos_token, hfConfig?.bos_token_id);
  pick('eos_token_id', config.eos_token, eosFallback);
  pick('unknown_token_id', config.unk_token, undefined);
  pick('padding_token_id', config.pad_token, hfConfig?.pad_token_id);
  return out;
}

/** Every tokenizer.* key for an HF folder, in the order llama.cpp's converter writes them. */
export async function hfTokenizerMetadata(src: HfTokenizerSource, chatTemplate?: string): Promise<Map<string, GgufMetadataInput>> {
  const tokenizerPath = join(src.dir, 'tokenizer.json');
  const json = parseTokenizerJson(await readJson(tokenizerPath), tokenizerPath);
  const configPath = join(src.dir, 'tokenizer_config.json');
  const config = parseTokenizerConfig(existsSync(configPath) ? await readJson(configPath) : {}, configPath);
  if (json.model.type !== undefined && json.model.type !== 'BPE') throw new Error(`${tokenizerPath}: a ${json.model.type} tokenizer cannot be exported to GGUF (only BPE)`);
  const byteLevel = isByteLevel(json);
  const table = tokenTable(json, tokenizerPath, src.vocabRows, byteLevel);
  const out = new Map<string, GgufMetadataInput>();
  if (byteLevel) {
    out.set('tokenizer.ggml.model', 'gpt2');
    out.set('tokenizer.ggml.pre', preTokenizerName(json, tokenizerPath));
    out.set('tokenizer.ggml.tokens', table.tokens);
    out.set('tokenizer.ggml.token_type', { type: 'int32[]', value: table.types });
    out.set('tokenizer.ggml.merges', { type: 'string[]', value: mergeStrings(json) });
  } else {
    out.set('tokenizer.ggml.model', 'llama');
    out.set('tokenizer.ggml.pre', 'default');
    out.set('tokenizer.ggml.tokens', table.tokens);
    out.set('tokenizer.ggml.scores', { type: 'float32[]', value: spmScores(json, table) });
    out.set('tokenizer.ggml.token_type', { type: 'int32[]', value: table.types });
    if (!addsSpacePrefix(json)) out.set('tokenizer.ggml.add_space_prefix', false);
  }
  for (const [k, v] of specialIds(table, config, src.hfConfig, tokenizerPath)) out.set(k, v);
  const addBos = config.add_bos_token ?? templateAdds(json, config.bos_token, 'first');
  const addEos = config.add_eos_token ?? templateAdds(json, config.eos_token, 'last');
  if (addBos !== undefined) out.set('tokenizer.ggml.add_bos_token', addBos);
  if (addEos !== undefined) out.set('tokenizer.ggml.add_eos_token', addEos);
  const jinjaPath = join(src.dir, 'chat_template.jinja');
  const template = chatTemplate ?? (existsSync(jinjaPath) ? await readFile(jinjaPath, 'utf8') : configChatTemplate(config));
  if (template !== undefined) out.set('tokenizer.chat_template', template);
  return out;
}
