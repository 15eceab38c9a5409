/**
 * The training and validation records of a run: a prepared folder (its train and valid splits),
 * or raw JSONL files prepared into the run folder first with the model's tokenizer and template.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import type { Batch } from '../data/batch.js';
import { openPreparedDataset, type PreparedDataset, type RecordSource } from '../data/prepared-dataset.js';
import { prepareDataset, type PrepareOptionsInput } from '../data/prepare.js';
import type { NativeBatch } from '../native.js';

export interface TrainingData {
  train: RecordSource;
  valid: RecordSource | undefined;
  padId: number;
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
    ...(p.template !== undefined ? { template: p.template } : {}),
    ...(p.min_quality !== undefined ? { minQuality: p.min_quality } : {}),
    ...(p.keep_unscored !== undefined ? { keepUnscored: p.keep_unscored } : {}),
    ...(p.min_messages !== undefined ? { minMessages: p.min_messages } : {}),
    ...(p.train_on !== undefined ? { trainOn: p.train_on } : {}),
    ...(p.overlong !== undefined ? { overlong: p.overlong } : {}),
    ...(p.near_duplicate_threshold !== undefined ? { nearDuplicateThreshold: p.near_duplicate_threshold } : {}),
  };
}

async function prepareInto(config: TrainConfig, inputs: string[], outDir: string, split: Split): Promise<PreparedDataset> {
  await prepareDataset({ ...prepareOptionsOf(config), inputs, outDir, split });
  return openPreparedDataset(outDir);
}

// Files given for one role belong to it whole: the run's own split decides nothing.
const WHOLE: Split = { valid: 0, test: 0 };

export async function openTrainingData(config: TrainConfig): Promise<TrainingData> {
  const trainPaths = asList(config.data.train);
  const validPaths = asList(config.data.valid);
  const opened: PreparedDataset[] = [];
  let train: RecordSource;
  let valid: RecordSource | undefined;
  if (trainPaths.length === 1 && isPreparedFolder(trainPaths[0]!)) {
    const ds = openPreparedDataset(trainPaths[0]!);
    opened.push(ds);
    train = ds.split('train');
    if (validPaths.length === 1 && isPreparedFolder(validPaths[0]!)) {
      const v = openPreparedDataset(validPaths[0]!);
      opened.push(v);
      valid = v.split('valid').size > 0 ? v.split('valid') : v.split('train');
    } else if (validPaths.length > 0) {
      const v = await prepareInto(config, validPaths, join(config.output, 'prepared-valid'), WHOLE);
      opened.push(v);
      valid = v.split('train');
    } else {
      valid = ds.split('valid').size > 0 ? ds.split('valid') : undefined;
    }
  } else {
    for (const p of trainPaths) {
      if (isPreparedFolder(p)) throw new Error(`data.train: a prepared folder (${p}) cannot be mixed with other inputs`);
    }
    if (validPaths.length === 0) {
      // One prepare over everything: dedupe sees all records, and the content-hash split keeps
      // each record in its split as later exports add to the files.
      const p = config.data.prepare;
      const t = await prepareInto(config, trainPaths, join(config.output, 'prepared'), { valid: p?.valid_fraction ?? 0.05, test: p?.test_fraction ?? 0.05 });
      opened.push(t);
      train = t.split('train');
      valid = t.split('valid').size > 0 ? t.split('valid') : undefined;
    } else {
      const t = await prepareInto(config, trainPaths, join(config.output, 'prepared-train'), WHOLE);
      opened.push(t);
      train = t.split('train');
      const v = await prepareInto(config, validPaths, join(config.output, 'prepared-valid'), WHOLE);
      opened.push(v);
      valid = v.split('train');
    }
  }
  if (train.size === 0) throw new Error('data.train: no training records');
  const padId = opened[0]!.manifest.tokenizer.padId ?? 0;
  return { train, valid, padId, close: () => opened.forEach((d) => d.close()) };
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
