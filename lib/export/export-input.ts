/**
 * What `export` reads: a run folder (its final adapter or one checkpoint), an adapter folder, or a
 * base model alone, and the base model the adapter names (`--model` overrides it). Everything is
 * checked here, before any output is written, so a typo fails in a second rather than after a
 * long export.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { resolveModelSource, type ModelSource } from '../source/model-source.js';
import { ADAPTER_CONFIG_FILE } from '../model/adapter-config.js';
import { bestCheckpoint, checkpointFolderName, CheckpointStore, InvalidCheckpointError, type Checkpoint } from '../train/checkpoint-store.js';
import { ADAPTER_FILE } from '../train/run-checkpoint.js';
import { ADAPTER_DIR } from '../train/run-folder.js';

/** `best` (lowest validation loss), `latest`, or `step-N` (`step-120` or `step-000120`). */
export const checkpointSpecSchema = z.union([z.literal('best'), z.literal('latest'), z.string().regex(/^step-\d+$/, 'expected best, latest or step-N')]);
export type CheckpointSpec = z.infer<typeof checkpointSpecSchema>;

export interface ExportInputOptions {
  run?: string | undefined;
  checkpoint?: CheckpointSpec | undefined;
  adapter?: string | undefined;
  model?: string | undefined;
  ollamaModelsDir?: string | undefined;
}

export interface ExportInput {
  /** The adapter folder to merge or convert; undefined when only a base model is exported. */
  adapterDir?: string;
  /** The base model as given (HF folder, GGUF file or Ollama name). */
  base: string;
  /** Where `base` came from: `--model`, or the adapter config file and key that named it. */
  baseNamedBy: string;
  source: ModelSource;
  /** One line for the user: what is exported. */
  description: string;
}

/** The export input is unusable: a missing folder, checkpoint, adapter file or base model. */
export class ExportInputError extends Error {
  override readonly name = 'ExportInputError';
}

const adapterConfigBaseSchema = z.looseObject({
  base_model: z.looseObject({ source: z.string().min(1) }).optional(),
  model: z.string().min(1).optional(),
  base_model_name_or_path: z.string().min(1).nullish(),
});

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** The base an adapter folder names: ours (`base_model.source`), mlx-lm's `model`, PEFT's `base_model_name_or_path`. */
export async function baseNamedByAdapter(adapterDir: string): Promise<{ base: string; namedBy: string } | undefined> {
  const file = join(adapterDir, ADAPTER_CONFIG_FILE);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new ExportInputError(`${file}: ${error.code === 'ENOENT' ? 'not found (not an adapter folder)' : error.message}`);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ExportInputError(`${file}: invalid JSON (${(error as Error).message})`);
  }
  const parsed = adapterConfigBaseSchema.safeParse(json);
  if (!parsed.success) throw new ExportInputError(`${file}: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
  const c = parsed.data;
  if (c.base_model) return { base: c.base_model.source, namedBy: `${file} (base_model.source)` };
  if (c.model) return { base: c.model, namedBy: `${file} (model)` };
  if (c.base_model_name_or_path) return { base: c.base_model_name_or_path, namedBy: `${file} (base_model_name_or_path)` };
  return undefined;
}

async function pickCheckpoint(runDir: string, spec: CheckpointSpec): Promise<Checkpoint> {
  const dir = join(runDir, 'checkpoints');
  if (!(await isDirectory(dir))) throw new ExportInputError(`--run ${runDir}: no checkpoints folder (${dir})`);
  const store = await CheckpointStore.open(dir, { keepLast: 1, readOnly: true, requiredFiles: [ADAPTER_FILE, ADAPTER_CONFIG_FILE] });
  if (spec === 'latest') {
    const { checkpoint, skipped } = await store.loadLatest();
    if (checkpoint) return checkpoint;
    const why = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
    throw new ExportInputError(`--run ${runDir}: no loadable checkpoint in ${dir}${why ? ` (${why})` : ''}`);
  }
  if (spec === 'best') {
    const best = bestCheckpoint((await store.list()).checkpoints);
    if (best) return best;
    throw new ExportInputError(`--run ${runDir}: no checkpoint in ${dir} has a validation loss (was eval off?); use --checkpoint latest or step-N`);
  }
  const name = checkpointFolderName(Number(spec.slice('step-'.length)));
  try {
    return await store.load(name);
  } catch (error) {
    if (!(error instanceof InvalidCheckpointError)) throw error;
    throw new ExportInputError(`--run ${runDir}: ${join(dir, name)}: ${error.reason}`);
  }
}

/** The adapter folder of a run: `--checkpoint`'s, else the final `adapter/`, else the latest checkpoint. */
async function adapterOfRun(runDir: string, spec: CheckpointSpec | undefined): Promise<{ dir: string; what: string }> {
  if (!(await isDirectory(runDir))) throw new ExportInputError(`--run ${runDir}: no such folder`);
  if (spec === undefined) {
    const final = join(runDir, ADAPTER_DIR);
    if (await stat(join(final, ADAPTER_CONFIG_FILE)).catch(() => undefined)) return { dir: final, what: `run ${runDir}, final adapter` };
    const latest = await pickCheckpoint(runDir, 'latest').catch((error: unknown) => {
      throw new ExportInputError(`--run ${runDir}: no final adapter (${final}) and no checkpoint to fall back on: ${(error as Error).message}`);
    });
    return { dir: latest.dir, what: `run ${runDir}, ${latest.name} (latest; the run has no final adapter)` };
  }
  const checkpoint = await pickCheckpoint(runDir, spec);
  return { dir: checkpoint.dir, what: `run ${runDir}, ${checkpoint.name}${spec === 'best' ? ` (best, val_loss ${checkpoint.state.eval_loss})` : ''}` };
}

async function adapterFolder(dir: string): Promise<string> {
  const path = resolve(dir);
  if (!(await isDirectory(path))) throw new ExportInputError(`--adapter ${dir}: no such folder`);
  return path;
}

/** Checks that the base resolves (a folder, a GGUF file, an Ollama model) and names who asked for it. */
async function resolveBase(base: string, namedBy: string, ollamaModelsDir: string | undefined): Promise<ModelSource> {
  try {
    return await resolveModelSource(base, ollamaModelsDir ? { ollamaModelsDir } : {});
  } catch (error) {
    const hint = namedBy === '--model' ? '' : '; pass --model to name the base';
    throw new ExportInputError(`base model '${base}' (named by ${namedBy}) cannot be loaded: ${(error as Error).message}${hint}`, { cause: error });
  }
}

export async function resolveExportInput(o: ExportInputOptions): Promise<ExportInput> {
  if (o.run !== undefined && o.adapter !== undefined) throw new ExportInputError('give --run or --adapter, not both');
  if (o.checkpoint !== undefined && o.run === undefined) throw new ExportInputError('--checkpoint needs --run');
  let adapter: { dir: string; what: string } | undefined;
  if (o.run !== undefined) adapter = await adapterOfRun(resolve(o.run), o.checkpoint);
  else if (o.adapter !== undefined) adapter = { dir: await adapterFolder(o.adapter), what: `adapter ${resolve(o.adapter)}` };
  let base: string;
  let baseNamedBy: string;
  if (o.model !== undefined) {
    base = o.model;
    baseNamedBy = '--model';
  } else if (adapter) {
    const named = await baseNamedByAdapter(adapter.dir);
    if (!named) throw new ExportInputError(`${join(adapter.dir, ADAPTER_CONFIG_FILE)} names no base model (base_model.source, model or base_model_name_or_path); pass --model`);
    ({ base, namedBy: baseNamedBy } = named);
  } else {
    throw new ExportInputError('nothing to export: give --run DIR, --adapter DIR or --model M');
  }
  const source = await resolveBase(base, baseNamedBy, o.ollamaModelsDir);
  if (adapter) {
    const weights = join(adapter.dir, ADAPTER_FILE);
    const hasMlxWeights = await stat(weights).catch(() => undefined);
    const hasPeftWeights = await stat(join(adapter.dir, 'adapter_model.safetensors')).catch(() => undefined);
    if (!hasMlxWeights && !hasPeftWeights) throw new ExportInputError(`${adapter.dir}: no ${ADAPTER_FILE} or adapter_model.safetensors (not an adapter folder)`);
  }
  return {
    ...(adapter ? { adapterDir: adapter.dir } : {}),
    base,
    baseNamedBy,
    source,
    description: `${adapter ? `${adapter.what} on ` : ''}base ${base}`,
  };
}
