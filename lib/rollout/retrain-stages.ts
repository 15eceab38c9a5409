/**
 * The retrain job's stages, each a function of the pipeline and what earlier stages wrote, each
 * returning the outputs the state file records (and a check that they still exist).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { TrainConfigInput } from '../config/train-config.js';
import { MANIFEST_FILE } from '../data/manifest.js';
import { prepareDataset } from '../data/prepare.js';
import { ALL_CATEGORIES } from '../eval/eval-results.js';
import { evaluate } from '../eval/evaluate.js';
import { exportModel } from '../export/export-model.js';
import { ADAPTER_CONFIG_FILE } from '../model/adapter.js';
import type { RunEvent } from '../train/run-events.js';
import { train } from '../train/trainer.js';
import type { PipelineConfig } from './pipeline-config.js';
import type { StageOutputs } from './retrain-state.js';

export interface StageContext {
  config: PipelineConfig;
  work: string;
  /** The version being made, and the adapter and base of the one it continues from. */
  version: string;
  parentAdapter: string;
  base: string;
  signal?: AbortSignal;
  onTrainEvent?: (event: RunEvent) => void;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function expectFile(path: string, sha256?: string): Promise<void> {
  if (!existsSync(path)) throw new Error(`${path} is missing`);
  if (sha256 !== undefined && (await sha256File(path)) !== sha256) throw new Error(`${path} changed (sha256 differs from the recorded one)`);
}

const preparedOutputs = z.object({ prepared: z.string(), manifest_sha256: z.string() });
const trainOutputs = z.object({ adapter: z.string(), run: z.string(), config_hash: z.string() });
const armSummary = z.object({ loss: z.number(), exact_match: z.number() });
const evalOutputs = z.object({ current: armSummary, candidate: armSummary, report: z.string(), gate: z.object({ passed: z.boolean(), reasons: z.array(z.string()) }) });
const exportOutputs = z.object({ exports: z.array(z.object({ path: z.string(), sha256: z.string(), type: z.string(), bytes: z.number() })) });
export const stageOutputSchemas = { prepare: preparedOutputs, train: trainOutputs, eval: evalOutputs, export: exportOutputs };

/** The earlier prepared data: the pipeline's data.since, else prepared/ beside the parent's run folder. */
export function sinceFolder(c: PipelineConfig, parentAdapter: string): string {
  const since = c.data.since ?? join(dirname(dirname(parentAdapter)), 'prepared');
  if (!existsSync(join(since, MANIFEST_FILE))) throw new Error(`retrain: no earlier prepared data at ${since} (set data.since in the pipeline config)`);
  return since;
}

export async function prepareStage(ctx: StageContext): Promise<StageOutputs> {
  const d = ctx.config.data;
  const outDir = join(ctx.work, 'prepared');
  const { report } = await prepareDataset({
    model: ctx.base,
    inputs: d.inputs,
    outDir,
    maxSeqLength: d.max_seq_length,
    split: { valid: d.valid_fraction, test: 0 },
    ...(d.min_quality !== undefined ? { minQuality: d.min_quality } : {}),
    selection: { since: sinceFolder(ctx.config, ctx.parentAdapter), replay: d.replay, replaySeed: d.replay_seed, where: d.where },
  });
  if (report.splits.train.records === 0) throw new Error(`retrain: no new training records in ${d.inputs.join(', ')}`);
  return { prepared: outDir, manifest_sha256: await sha256File(join(outDir, MANIFEST_FILE)), train_records: report.splits.train.records };
}

export const verifyPrepare = async (o: StageOutputs) => {
  const p = preparedOutputs.parse(o);
  await expectFile(join(p.prepared, MANIFEST_FILE), p.manifest_sha256);
};

export async function trainStage(ctx: StageContext, prepared: string): Promise<StageOutputs> {
  const t = ctx.config.train as Partial<Pick<TrainConfigInput, 'lora' | 'quantization' | 'training' | 'eval' | 'checkpoint' | 'memory'>>;
  const output = join(ctx.work, 'run');
  const config = {
    ...t,
    model: ctx.base,
    data: { train: prepared, max_seq_length: ctx.config.data.max_seq_length },
    lora: { ...t.lora, init_adapter: ctx.parentAdapter },
    output,
  } as TrainConfigInput;
  // A run killed part way continues from its last checkpoint; with none it starts afresh.
  const run = train(config, { resume: true, ...(ctx.signal ? { signal: ctx.signal } : {}) });
  let configHash = '';
  for await (const event of run) {
    if (event.type === 'start') configHash = event.config_hash;
    ctx.onTrainEvent?.(event);
  }
  const done = await run.done;
  if (done.reason === 'aborted' || !done.adapter_path) throw new Error('retrain: training was stopped; run retrain again to continue it');
  return { adapter: done.adapter_path, run: output, config_hash: configHash, steps: done.step };
}

export const verifyTrain = async (o: StageOutputs) => expectFile(join(trainOutputs.parse(o).adapter, ADAPTER_CONFIG_FILE));

/** The gate: the candidate may be no worse than the pipeline allows, on loss and on exact match. */
export function gateDecision(gate: PipelineConfig['gate'], current: z.output<typeof armSummary>, candidate: z.output<typeof armSummary>): { passed: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const lossIncrease = candidate.loss - current.loss;
  if (!(lossIncrease <= gate.max_loss_increase)) reasons.push(`loss ${candidate.loss.toFixed(4)} vs ${current.loss.toFixed(4)}: up ${lossIncrease.toFixed(4)} > max_loss_increase ${gate.max_loss_increase}`);
  const emDelta = candidate.exact_match - current.exact_match;
  if (!(emDelta >= gate.min_exact_match_delta)) reasons.push(`exact match ${candidate.exact_match.toFixed(4)} vs ${current.exact_match.toFixed(4)}: delta ${emDelta.toFixed(4)} < min_exact_match_delta ${gate.min_exact_match_delta}`);
  return { passed: reasons.length === 0, reasons };
}

export async function evalStage(ctx: StageContext, candidateAdapter: string): Promise<StageOutputs> {
  const out = join(ctx.work, 'eval');
  await mkdir(out, { recursive: true });
  const { report, files } = await evaluate({
    model: ctx.base,
    adapters: [
      { name: 'current', path: ctx.parentAdapter },
      { name: 'candidate', path: candidateAdapter },
    ],
    data: ctx.config.eval.data,
    out,
    maxTokens: ctx.config.eval.max_tokens,
  });
  const arm = (name: string) => {
    const gen = report.generation.find((r) => r.arm === name && r.category === ALL_CATEGORIES);
    const lik = report.likelihood.find((r) => r.arm === name && r.category === ALL_CATEGORIES);
    return { loss: lik?.loss ?? Number.NaN, exact_match: gen?.exact_match ?? 0 };
  };
  const current = arm('current');
  const candidate = arm('candidate');
  return { current, candidate, report: files[0] ?? out, gate: gateDecision(ctx.config.gate, current, candidate) };
}

export const verifyEval = async (o: StageOutputs) => expectFile(evalOutputs.parse(o).report);

export async function exportStage(ctx: StageContext, run: string): Promise<StageOutputs> {
  const dir = join(ctx.work, 'export');
  await mkdir(dir, { recursive: true });
  const exports = [];
  for (const gguf of ctx.config.export.gguf) {
    const e = await exportModel({ run, gguf, out: join(dir, `${ctx.version}-${gguf}.gguf`), modelfile: true, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    exports.push({ path: e.out, sha256: await sha256File(e.out), type: e.type, bytes: e.bytes });
  }
  return { exports };
}

export const verifyExport = async (o: StageOutputs) => {
  for (const e of exportOutputs.parse(o).exports) await expectFile(e.path, e.sha256);
};

/** Ollama gets the version only when the gate passed and the pipeline names an export for it. */
export async function registerStage(ctx: StageContext, run: string, gatePassed: boolean): Promise<StageOutputs> {
  const kind = ctx.config.export.ollama;
  if (!kind) return { skipped: 'export.ollama is not set' };
  if (!gatePassed) return { skipped: 'the gate did not pass' };
  const dir = join(ctx.work, 'ollama');
  await mkdir(dir, { recursive: true });
  const e = await exportModel({ run, gguf: kind, out: join(dir, `${ctx.version}-${kind}.gguf`), modelfile: true, ollama: ctx.version, ...(ctx.config.export.ollama_host ? { ollamaHost: ctx.config.export.ollama_host } : {}) });
  return { ollama: e.ollama!.model, gguf: e.out };
}
