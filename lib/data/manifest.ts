/**
 * `manifest.json` of a prepared dataset: what went in (sources and their hashes, tokenizer, template,
 * options) and what came out (per split: shards with their record/token counts and hashes).
 *
 * Shard files are raw little-endian arrays, so they can be memory-mapped as they are:
 * - `<split>-NNNNN.tokens.i32`  int32 token ids of all records, back to back
 * - `<split>-NNNNN.mask.u8`     uint8 per token: 1 where predicting that token is trained
 * - `<split>-NNNNN.lengths.u32` uint32 token count of each record (offsets are their prefix sums)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { RECORD_FORMATS } from './record.js';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_KIND = 'mlx-qlora-prepared-dataset';

const shardSchema = z.object({
  tokens: z.string(),
  mask: z.string(),
  lengths: z.string(),
  records: z.number().int().nonnegative(),
  tokenCount: z.number().int().nonnegative(),
  sha256: z.object({ tokens: z.string(), mask: z.string(), lengths: z.string() }),
});
export type ShardInfo = z.infer<typeof shardSchema>;

const splitSchema = z.object({
  records: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
  trainedTokens: z.number().int().nonnegative(),
  shards: z.array(shardSchema),
});
export type SplitInfo = z.infer<typeof splitSchema>;

export const manifestSchema = z.object({
  kind: z.literal(MANIFEST_KIND),
  version: z.literal(1),
  createdAt: z.string(),
  tokenizer: z.object({
    /** Where the vocabulary came from (`--model`). */
    model: z.string(),
    kind: z.enum(['hf', 'gguf', 'ollama']),
    /** Copy written beside the shards, so the dataset is readable without the model. */
    dir: z.string(),
    sha256: z.string(),
    vocabSize: z.number().int().positive(),
    bosId: z.number().int().nullable(),
    eosId: z.number().int().nullable(),
    padId: z.number().int().nullable(),
  }),
  template: z.object({ name: z.string(), sha256: z.string() }),
  sources: z.array(
    z.object({
      path: z.string(),
      format: z.enum(RECORD_FORMATS),
      formatDetected: z.boolean(),
      bytes: z.number().int().nonnegative(),
      sha256: z.string(),
    }),
  ),
  options: z.object({
    maxSeqLength: z.number().int().positive(),
    overlong: z.enum(['drop', 'truncate']),
    trainOn: z.enum(['assistant', 'last-assistant', 'all']),
    splitFractions: z.object({ valid: z.number(), test: z.number() }),
    minQuality: z.number().nullable(),
    keepUnscored: z.boolean(),
    minMessages: z.number().int(),
    dedupe: z.boolean(),
    nearDuplicateThreshold: z.number().nullable(),
  }),
  splits: z.object({ train: splitSchema, valid: splitSchema, test: splitSchema }),
});
export type Manifest = z.infer<typeof manifestSchema>;

export function readManifest(dir: string): Manifest {
  const path = join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`${path}: not a prepared-dataset manifest: ${issue ? `${issue.path.join('.')}: ${issue.message}` : ''}`);
  }
  return r.data;
}
