/**
 * pipeline.yaml: the monthly retraining job `mlx-qlora retrain` runs. Validated like the training
 * config (every problem with its file:line and key); relative paths resolve against the file's
 * folder. The `train` section is the training config's lora/quantization/training/eval/checkpoint/
 * memory sections: the model, data and output come from the pipeline.
 */
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import { formatFromFileName, parseConfigSource } from '../config/config-source.js';
import { allowedConfigKeys, trainConfigSchema } from '../config/train-config.js';
import { problemsFromIssues, type KeyPath } from '../config/zod-problems.js';
import { EXPORT_GGUF_KINDS } from '../export/export-options.js';

const text = z.string().min(1);
const TRAIN_SECTIONS = ['lora', 'quantization', 'training', 'eval', 'checkpoint', 'memory'] as const;

export const pipelineConfigSchema = z.strictObject({
  /** Versions are named NAME-v1, NAME-v2, … (the Ollama name too). */
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/i, 'letters, digits, dot, dash and underscore'),
  /** The version registry's folder (versions.json). */
  registry: text,
  /** This run's folder: the state file and every stage's outputs. */
  work: text,
  /** The base model; default the current version's. */
  base_model: text.optional(),
  data: z.strictObject({
    inputs: z.array(text).min(1),
    /** The earlier prepared data; default prepared/ beside the current version's run folder. */
    since: text.optional(),
    replay: z.number().min(0).max(1).default(0.1),
    replay_seed: z.int().min(0).default(0),
    where: z.array(text).default([]),
    max_seq_length: z.int().min(2).default(2048),
    valid_fraction: z.number().min(0).lt(1).default(0.05),
    min_quality: z.number().min(0).max(1).optional(),
  }),
  train: z.partialRecord(z.enum(TRAIN_SECTIONS), z.unknown()).default({}),
  eval: z.strictObject({
    /** The fixed held-out evaluation file (evaluate()'s JSONL). */
    data: text,
    max_tokens: z.int().min(1).default(64),
  }),
  export: z
    .strictObject({
      gguf: z.array(z.enum(EXPORT_GGUF_KINDS)).min(1).default(['adapter']),
      /** Which export Ollama gets; absent: no registration. */
      ollama: z.enum(EXPORT_GGUF_KINDS).optional(),
      ollama_host: text.optional(),
    })
    .prefault({}),
  gate: z
    .strictObject({
      /** The candidate's eval loss may exceed the current version's by at most this. */
      max_loss_increase: z.number().default(0),
      /** The candidate's exact match minus the current version's must be at least this. */
      min_exact_match_delta: z.number().default(0),
    })
    .prefault({}),
});
export type PipelineConfig = z.output<typeof pipelineConfigSchema>;
export type PipelineConfigInput = z.input<typeof pipelineConfigSchema>;

const SECTION_KEYS: Record<string, readonly string[]> = {
  '': Object.keys(pipelineConfigSchema.shape),
  data: Object.keys(pipelineConfigSchema.shape.data.shape),
  eval: Object.keys(pipelineConfigSchema.shape.eval.shape),
  train: TRAIN_SECTIONS,
};

function allowedKeys(keyPath: KeyPath): readonly string[] | undefined {
  if (keyPath[0] === 'train' && keyPath.length > 1) return allowedConfigKeys(keyPath.slice(1));
  return SECTION_KEYS[keyPath.join('.')];
}

/** The train section checked by the training config's own schema, its problems under `train.`. */
function trainSectionIssues(value: unknown): z.core.$ZodIssue[] {
  const train = (value as { train?: unknown } | null)?.train;
  if (train === null || typeof train !== 'object' || Array.isArray(train)) return [];
  const r = trainConfigSchema.safeParse({ model: 'm', data: { train: 'd' }, output: 'o', ...train });
  return r.success ? [] : r.error.issues.map((i) => ({ ...i, path: ['train', ...i.path] }));
}

function resolvePaths(c: PipelineConfig, baseDir: string): PipelineConfig {
  const at = (p: string) => path.resolve(baseDir, p);
  return {
    ...c,
    registry: at(c.registry),
    work: at(c.work),
    ...(c.base_model ? { base_model: /^(\.{1,2}[/\\]|[/\\])|\.gguf$/i.test(c.base_model) ? at(c.base_model) : c.base_model } : {}),
    data: { ...c.data, inputs: c.data.inputs.map(at), ...(c.data.since ? { since: at(c.data.since) } : {}) },
    eval: { ...c.eval, data: at(c.eval.data) },
  };
}

/** Validates a pipeline config object (lines from `lineOf` when it came from a file). */
export function parsePipelineConfig(value: unknown, options: { file?: string; baseDir?: string; lineOf?: (p: KeyPath) => number | undefined } = {}): PipelineConfig {
  const r = pipelineConfigSchema.safeParse(value);
  const issues = [...(r.success ? [] : r.error.issues), ...trainSectionIssues(value)];
  if (issues.length > 0) {
    const problems = problemsFromIssues(issues, value, allowedKeys).map((p): ConfigProblem => {
      const line = options.lineOf?.(p.path);
      return line ? { ...p, line } : p;
    });
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(problems, options.file, 'pipeline config');
  }
  return resolvePaths(r.data!, options.baseDir ?? process.cwd());
}

export async function loadPipelineConfig(file: string): Promise<PipelineConfig> {
  const resolved = path.resolve(file);
  let content: string;
  try {
    content = await readFile(resolved, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(error);
    throw new ConfigError([{ message: `cannot read the pipeline config: ${reason}` }], resolved, 'pipeline config');
  }
  const source = parseConfigSource(content, formatFromFileName(resolved), resolved);
  return parsePipelineConfig(source.value ?? {}, { file: resolved, baseDir: path.dirname(resolved), lineOf: source.lineOf });
}

/** Identifies a pipeline config, so a work folder is never resumed under another one. */
export function pipelineConfigHash(c: PipelineConfig): string {
  return createHash('sha256').update(JSON.stringify(c)).digest('hex');
}
