/** `prepare`'s options (zod, with errors naming the CLI flag), hooks and result. */
import { z } from 'zod';
import type { ModelTokenizer } from '../tokenizer/load-tokenizer.js';
import { EMIT_FORMATS } from './emit.js';
import { fieldMappingSchema } from './field-mapping.js';
import type { Manifest } from './manifest.js';
import { RECORD_FORMATS } from './record.js';
import type { PrepareReport } from './report.js';
import { recordSelectionSchema } from './since-filter.js';
import { DEFAULT_SPLIT_FRACTIONS, splitFractionsSchema } from './split.js';

export const prepareOptionsSchema = z.object({
  /** HF folder, tokenizer.json, .gguf file or Ollama name; ignored when `tokenizer` is given. */
  model: z.string().optional(),
  inputs: z.array(z.string()).min(1),
  outDir: z.string(),
  template: z.string().optional(),
  ollamaModelsDir: z.string().optional(),
  /** Force one format for every input instead of detecting per file. */
  format: z.enum(RECORD_FORMATS).optional(),
  /** Per-file formats, before `format`: the first pattern matching a file wins (format-overrides.ts). */
  formatByFile: z.array(z.object({ pattern: z.string().min(1), format: z.enum(RECORD_FORMATS) })).default([]),
  /** Field names of exports that name them differently (field-mapping.ts). */
  mapping: fieldMappingSchema.optional(),
  reasoning: z.enum(['omit', 'inline']).default('omit'),
  minQuality: z.number().min(0).max(1).optional(),
  keepUnscored: z.boolean().default(false),
  minMessages: z.number().int().nonnegative().default(0),
  dedupe: z.boolean().default(true),
  /** Jaccard threshold for near duplicates; null turns near-duplicate detection off. */
  nearDuplicateThreshold: z.number().gt(0).lt(1).nullable().default(0.85),
  split: splitFractionsSchema.default(DEFAULT_SPLIT_FRACTIONS),
  maxSeqLength: z.number().int().min(2).default(2048),
  overlong: z.enum(['drop', 'truncate']).default('drop'),
  trainOn: z.enum(['assistant', 'last-assistant', 'all']).default('assistant'),
  strict: z.boolean().default(false),
  emit: z.array(z.enum(EMIT_FORMATS)).default([]),
  maxLineBytes: z.number().int().positive().optional(),
  shardTokens: z.number().int().positive().optional(),
  /** Rows per batch for the padding/fill figures in the report. */
  reportBatchSize: z.number().int().positive().default(4),
  /** --since / --replay / --where (since-filter.ts). */
  selection: recordSelectionSchema.default({ replay: 0, replaySeed: 0, where: [] }),
});
export type PrepareOptionsInput = z.input<typeof prepareOptionsSchema>;
export type PrepareOptions = z.output<typeof prepareOptionsSchema>;

/** CLI flag of each option, so a bad value names what the user typed. */
const OPTION_FLAGS: Partial<Record<keyof PrepareOptions, string>> = {
  model: '--model',
  inputs: '--input',
  outDir: '--out',
  format: '--format',
  formatByFile: '--format',
  mapping: '--mapping',
  minQuality: '--min-quality',
  minMessages: '--min-messages',
  nearDuplicateThreshold: '--near-dup',
  split: '--valid-fraction / --test-fraction',
  maxSeqLength: '--max-seq-length',
  overlong: '--overlong',
  trainOn: '--train-on',
  emit: '--emit',
};

/** Validates options, with an error naming the option (and its flag) instead of a ZodError dump. */
export function parsePrepareOptions(input: PrepareOptionsInput): PrepareOptions {
  const r = prepareOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = String(issue.path[0] ?? '');
  const flag = OPTION_FLAGS[key as keyof PrepareOptions];
  throw new Error(`invalid prepare option ${issue.path.join('.') || '(options)'}${flag ? ` (${flag})` : ''}: ${issue.message}`);
}

export interface PrepareProgress {
  bytesRead: number;
  totalBytes: number;
  records: number;
  file: string;
}

export interface PrepareHooks {
  /** A tokenizer already loaded (tests, or `train` preparing raw JSONL itself). */
  tokenizer?: ModelTokenizer;
  onProgress?: (progress: PrepareProgress) => void;
}

export interface PrepareResult {
  manifest: Manifest;
  report: PrepareReport;
}
