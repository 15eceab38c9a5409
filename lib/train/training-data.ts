/**
 * The records of a run: a prepared folder (its train, valid and test splits), or raw JSONL files
 * prepared into the run folder first with the model's tokenizer and template. Every split is fitted
 * to data.max_seq_length by the data.overlong policy, and a folder prepared with another
 * tokenizer is refused: its token ids would name other tokens to this model.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import type { Batch } from '../data/batch.js';
import { fitRecords, type OverlongCounts } from '../data/overlong.js';
import { openPreparedDataset, type PreparedDataset, type RecordSource } from '../data/prepared-dataset.js';
import { prepareDataset, type PrepareOptionsInput } from '../data/prepare.js';
import type { NativeBatch } from '../native.js';
import { loadModelTokenizer } from '../tokenizer/load-tokenizer.js';
import { TrainingError } from './training-error.js';

type Role = 'train' | 'valid' | 'test';

export interface TrainingData {
  train: RecordSource;
  valid: RecordSource | undefined;
  /** Evaluated once, at the end of the run. */
  test: RecordSource | undefined;
  padId: number;
  /** Ids of the tokenizer the records were prepared with: the model must have an embedding row for each. */
  vocabSize: number;
  /** What data.overlong did to each split (null: no such split). */
  overlong: Record<Role, OverlongCounts | null>;
  close(): void;
}

function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function isPreparedFolder(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory() && existsSync(join(path, 'manifest.json'));
}

type Split = { valid: number; test: number };

/** The run's `data.prepare` keys as prepare's options. */
function prepareOptionsOf(config: TrainConfig): Omit<PrepareOptionsInput, 'inputs' | 'outDir'> {
  const p = config.data.prepare ?? {};
  return {
    model: config.model,
    maxSeqLength: config.data.max_seq_length,
    // One policy for the run: records prepared here follow data.overlong too.
    overlong: config.data.overlong,
    ...(p.template !== undefined ? { template: p.template } : {}),
    ...(p.min_quality !== undefined ? { minQuality: p.min_quality } : {}),
    ...(p.keep_unscored !== undefined ? { keepUnscored: p.keep_unscored } : {}),
    ...(p.min_messages !== undefined ? { minMessages: p.min_messages } : {}),
    ...(p.train_on !== undefined ? { trainOn: p.train_on } : {}),
    ...(p.near_duplicate_threshold !== undefined ? { nearDuplicateThreshold: p.near_duplicate_threshold } : {}),
  };
}

// Files given for one role belong to it whole: the run's own split decides nothing.
const WHOLE: Split = { valid: 0, test: 0 };

/** Opens prepared folders and prepares raw JSONL, remembering which folders came from the user. */
class Opener {
  readonly opened: PreparedDataset[] = [];
  readonly foreign: PreparedDataset[] = [];

  constructor(private readonly config: TrainConfig) {}

  folder(path: string): PreparedDataset {
    const ds = openPreparedDataset(path);
    this.opened.push(ds);
    this.foreign.push(ds);
    return ds;
  }

  async prepared(inputs: string[], name: string, split: Split): Promise<PreparedDataset> {
    const outDir = join(this.config.output, name);
    await prepareDataset({ ...prepareOptionsOf(this.config), inputs, outDir, split });
    const ds = openPreparedDataset(outDir);
    this.opened.push(ds);
    return ds;
  }

  /** A role's own files: a prepared folder's `own` split (its train split when that is empty), or JSONL prepared whole. */
  async role(paths: string[], role: 'valid' | 'test'): Promise<RecordSource | undefined> {
    if (paths.length === 0) return undefined;
    if (paths.length === 1 && isPreparedFolder(paths[0]!)) {
      const ds = this.folder(paths[0]!);
      return ds.split(role).size > 0 ? ds.split(role) : ds.split('train');
    }
    return (await this.prepared(paths, `prepared-${role}`, WHOLE)).split('train');
  }
}

function nonEmpty(source: RecordSource): RecordSource | undefined {
  return source.size > 0 ? source : undefined;
}

async function openSplits(config: TrainConfig, open: Opener): Promise<Record<Role, RecordSource | undefined>> {
  const trainPaths = asList(config.data.train);
  const validPaths = asList(config.data.valid);
  const test = await open.role(asList(config.data.test), 'test');
  if (trainPaths.length === 1 && isPreparedFolder(trainPaths[0]!)) {
    const ds = open.folder(trainPaths[0]!);
    return { train: ds.split('train'), valid: (await open.role(validPaths, 'valid')) ?? nonEmpty(ds.split('valid')), test: test ?? nonEmpty(ds.split('test')) };
  }
  for (const p of trainPaths) {
    if (isPreparedFolder(p)) throw new Error(`data.train: a prepared folder (${p}) cannot be mixed with other inputs`);
  }
  if (validPaths.length > 0) {
    const t = await open.prepared(trainPaths, 'prepared-train', WHOLE);
    return { train: t.split('train'), valid: await open.role(validPaths, 'valid'), test };
  }
  // One prepare over everything: dedupe sees all records, and the content-hash split keeps each
  // record in its split as later exports add to the files.
  const p = config.data.prepare;
  const t = await open.prepared(trainPaths, 'prepared', { valid: p?.valid_fraction ?? 0.05, test: p?.test_fraction ?? 0.05 });
  return { train: t.split('train'), valid: nonEmpty(t.split('valid')), test: test ?? nonEmpty(t.split('test')) };
}

/** Refuses a prepared folder whose tokenizer is not the model's. */
async function checkTokenizers(config: TrainConfig, folders: PreparedDataset[]): Promise<void> {
  if (folders.length === 0) return;
  // The template is irrelevant to token ids; naming one keeps a model without a template loadable.
  const { tokenizer } = await loadModelTokenizer(config.model, { template: 'chatml' });
  for (const ds of folders) {
    const recorded = ds.manifest.tokenizer;
    if (recorded.sha256 === tokenizer.fingerprint && recorded.vocabSize === tokenizer.vocabSize) continue;
    throw new TrainingError(
      `${ds.dir} was prepared with the tokenizer of ${recorded.model} (sha256 ${recorded.sha256.slice(0, 12)}, ${recorded.vocabSize} ids), ` +
        `but the model ${config.model} has another tokenizer (sha256 ${tokenizer.fingerprint.slice(0, 12)}, ${tokenizer.vocabSize} ids): ` +
        `its token ids would name other tokens. Prepare the data again with --model ${config.model}`,
      'tokenizer_mismatch',
    );
  }
}

export async function openTrainingData(config: TrainConfig): Promise<TrainingData> {
  const open = new Opener(config);
  try {
    const splits = await openSplits(config, open);
    await checkTokenizers(config, open.foreign);
    const fit = async (source: RecordSource | undefined) =>
      source ? fitRecords(source, config.data.max_seq_length, config.data.overlong) : undefined;
    const [train, valid, test] = [await fit(splits.train), await fit(splits.valid), await fit(splits.test)];
    if (!train || train.source.size === 0) throw new Error('data.train: no training records');
    const first = open.opened[0]!.manifest.tokenizer;
    return {
      train: train.source,
      valid: valid?.source,
      test: test?.source,
      padId: first.padId ?? 0,
      vocabSize: Math.max(...open.opened.map((d) => d.manifest.tokenizer.vocabSize)),
      overlong: { train: train.counts, valid: valid?.counts ?? null, test: test?.counts ?? null },
      close: () => open.opened.forEach((d) => d.close()),
    };
  } catch (error) {
    open.opened.forEach((d) => d.close());
    throw error;
  }
}

/**
 * A data-layer batch in the native model's form. Rows holding one record each need neither
 * positions nor segments: plain causal attention and RoPE from 0 are the same thing, and faster.
 */
export function toNativeBatch(batch: Batch): NativeBatch {
  const packed = batch.segments.some((s) => s > 1);
  return {
    shape: [batch.rows, batch.width],
    tokens: batch.inputs,
    targets: batch.targets,
    mask: Float32Array.from(batch.mask),
    ...(packed ? { positions: batch.positions, segments: batch.segments } : {}),
  };
}
