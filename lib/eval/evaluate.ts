/**
 * evaluate(): every arm (the base with LoRA off, and each adapter, switched in one loaded base)
 * scores the references and answers every prompt with the same seed and sampling; optionally a
 * judge compares answers and exported GGUFs are checked against our model; the report is written
 * into `out`. Prompts are generated in batches that share one KV cache (generateBatch); greedy
 * answers are the tokens each prompt gets alone.
 */
import { stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { formatKeyPath, problemsFromIssues } from '../config/zod-problems.js';
import type { Rejection } from '../data/errors.js';
import type { NativeModel } from '../native.js';
import { DEFAULT_BATCH_SIZE, generateBatch } from '../model/generate-batch.js';
import { architectureOfModel } from '../model/architecture-of.js';
import { loadModel, recordedBaseQuantization, type BaseQuantization } from '../model/load-model.js';
import { ADAPTER_DIR } from '../train/run-folder.js';
import { loadModelTokenizer } from '../tokenizer/load-tokenizer.js';
import { ArmSwitcher, readArmAdapters, sharedLoraSettings, type ArmAdapter } from './adapter-arms.js';
import { loadEvalData, stopTokensOf, type EvalItem } from './eval-data.js';
import { aggregate, generationRow, likelihoodRow, type ArmOutput, type GenerationRow, type ItemResult, type LikelihoodRow } from './eval-results.js';
import { checkExport, llama, type ExportCheck } from './export-check.js';
import { checkJudge, judgeArms, type JudgeResult } from './judge.js';
import { sequenceLikelihood } from './likelihood.js';
import { trainingCurves, writeEvalReport, type TrainingCurve } from './eval-report.js';

export const BASE_ARM = 'base';

const quantizationSchema = z.union([z.literal('none'), z.strictObject({ bits: z.number().int(), groupSize: z.number().int() })]);
const optionsSchema = z.strictObject({
  model: z.string().min(1),
  adapters: z.array(z.strictObject({ name: z.string().min(1).regex(/^[\w.-]+$/, 'letters, digits, _ . - only'), path: z.string().min(1) })).default([]),
  data: z.string().min(1),
  out: z.string().min(1),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
  sampling: z.strictObject({ temperature: z.number().min(0).default(0), topP: z.number().min(0).max(1).default(1), topK: z.number().int().min(0).default(0) }).default({ temperature: 0, topP: 1, topK: 0 }),
  maxTokens: z.number().int().min(1).default(128),
  /** Prompts generated together in one KV cache. */
  batchSize: z.number().int().min(1).max(4096).default(DEFAULT_BATCH_SIZE),
  categories: z.array(z.string().min(1)).optional(),
  template: z.string().min(1).optional(),
  quantization: quantizationSchema.optional(),
  judge: z.strictObject({ model: z.string().min(1), host: z.string().optional() }).optional(),
  gguf: z.array(z.string().min(1)).default([]),
  /** The arm the GGUFs are compared with; default the first adapter (the base without one). */
  ggufArm: z.string().min(1).optional(),
  signal: z.instanceof(AbortSignal).optional(),
  onProgress: z.custom<(message: string) => void>((v) => typeof v === 'function').optional(),
});

export type EvaluateOptions = z.input<typeof optionsSchema>;
type Options = z.output<typeof optionsSchema>;

export interface EvalReport {
  model: string;
  data: { source: string; items: number; rejected: Rejection[] };
  settings: { seed: number; temperature: number; top_p: number; top_k: number; max_tokens: number; batch_size: number; base_quantization: BaseQuantization | 'as stored' };
  arms: { name: string; adapter: string | null; run: string | null }[];
  likelihood: LikelihoodRow[];
  generation: GenerationRow[];
  judge: JudgeResult | null;
  export_checks: ExportCheck[];
  training: TrainingCurve[];
  items: ItemResult[];
}

function parseOptions(raw: EvaluateOptions): Options {
  const parsed = optionsSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = problemsFromIssues(parsed.error.issues, raw);
  throw new TypeError(`evaluate options: ${problems.map((p) => `${formatKeyPath(p.path)}: ${p.message}`).join('; ')}`);
}

const isDir = async (p: string) => (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined;

/** An adapter given as a run folder (its final adapter) or an adapter folder (inside a run folder or not). */
async function resolveAdapter(path: string): Promise<{ adapter: string; run: string | null }> {
  const full = resolve(path);
  if (!(await isDir(full))) throw new Error(`${path}: not a folder (expected an adapter folder or a run folder)`);
  if (await exists(join(full, 'metrics.jsonl'))) {
    if (!(await isDir(join(full, ADAPTER_DIR)))) throw new Error(`${path}: a run folder without a final adapter (${ADAPTER_DIR}/): has the run finished?`);
    return { adapter: join(full, ADAPTER_DIR), run: full };
  }
  return { adapter: full, run: (await exists(join(dirname(full), 'metrics.jsonl'))) ? dirname(full) : null };
}

/** What the adapters record they were trained on; they must agree (a caller's choice overrides). */
/** The base the adapters record they were trained on (the loader's rule); one base for all arms. */
async function baseQuantizationOf(adapterDirs: readonly string[]): Promise<BaseQuantization | undefined> {
  const seen = new Map<string, BaseQuantization>();
  for (const dir of adapterDirs) {
    const q = await recordedBaseQuantization(dir).catch(() => undefined);
    if (q !== undefined) seen.set(JSON.stringify(q), q);
  }
  if (seen.size > 1) throw new Error(`the adapters were trained on differently quantized bases (${[...seen.keys()].join(' vs ')}): give one quantization (--bits) for all`);
  return [...seen.values()][0];
}

export async function evaluate(raw: EvaluateOptions): Promise<{ report: EvalReport; files: string[] }> {
  const o = parseOptions(raw);
  const say = o.onProgress ?? (() => undefined);
  const names = new Set([BASE_ARM]);
  for (const a of o.adapters) {
    if (names.has(a.name)) throw new Error(`arm name '${a.name}' is used twice ('${BASE_ARM}' is the base)`);
    names.add(a.name);
  }
  if (o.judge && o.adapters.length === 0) throw new Error('--judge compares adapters with the base: give at least one --adapter');
  // Before any model work: a judge that is asked for must answer.
  if (o.judge) await checkJudge(o.judge.model, o.judge.host);
  await checkExportInputs(o);
  const resolved = await Promise.all(o.adapters.map(async (a) => ({ ...a, ...(await resolveAdapter(a.path)) })));
  const { tokenizer, template } = await loadModelTokenizer(o.model, o.template ? { template: o.template } : {});
  const data = await loadEvalData(o.data, tokenizer, template);
  const items = o.categories ? data.items.filter((i) => o.categories!.includes(i.category)) : data.items;
  if (items.length === 0) throw new Error(`${o.data}: no items in the categories ${o.categories!.join(', ')}`);
  const architecture = await architectureOfModel(o.model);
  const adapters = await readArmAdapters(resolved.map((a) => ({ name: a.name, path: a.adapter })), architecture);
  const quantization = o.quantization ?? (await baseQuantizationOf(resolved.map((a) => a.adapter)));
  say(`loading ${o.model}${quantization ? ` (base ${quantization === 'none' ? 'dense' : `${quantization.bits}-bit g${quantization.groupSize}`})` : ''}`);
  const lora = sharedLoraSettings(adapters, architecture.numLayers);
  const loaded = await loadModel(o.model, { ...(quantization ? { quantization } : {}), ...(lora ? { lora } : {}) });
  try {
    const switcher = await ArmSwitcher.open(loaded.native, adapters);
    const arms: (ArmAdapter | undefined)[] = [undefined, ...adapters];
    const results = items.map((i): ItemResult => ({ id: i.id, category: i.category, prompt: i.promptText, reference: i.reference ?? null, outputs: {} }));
    const ctx: ArmRun = { model: loaded.native, items, results, o, stopTokens: stopTokensOf(tokenizer), decode: (ids) => tokenizer.decode(ids), say };
    for (const arm of arms) {
      await switcher.use(arm);
      await runArm(ctx, arm?.name ?? BASE_ARM, arm !== undefined);
    }
    const armNames = arms.map((a) => a?.name ?? BASE_ARM);
    const exportChecks = await runExportChecks(o, adapters, switcher, loaded.native, items, say);
    const judge = o.judge ? await runJudge(o, armNames, results, say) : null;
    const report: EvalReport = {
      model: o.model,
      data: { source: data.source, items: items.length, rejected: data.rejections },
      settings: { seed: o.seed, temperature: o.sampling.temperature, top_p: o.sampling.topP, top_k: o.sampling.topK, max_tokens: o.maxTokens, batch_size: o.batchSize, base_quantization: quantization ?? 'as stored' },
      arms: [{ name: BASE_ARM, adapter: null, run: null }, ...resolved.map((a) => ({ name: a.name, adapter: a.adapter, run: a.run }))],
      likelihood: aggregate(armNames, results, likelihoodRow),
      generation: aggregate(armNames, results, generationRow),
      judge,
      export_checks: exportChecks,
      training: await trainingCurves(resolved),
      items: results,
    };
    const files = await writeEvalReport(report, o.out);
    return { report, files };
  } finally {
    loaded.dispose();
  }
}

/** What every arm's pass shares: the model, the items and where their outcomes go. */
interface ArmRun {
  readonly model: NativeModel;
  readonly items: readonly EvalItem[];
  readonly results: ItemResult[];
  readonly o: Options;
  readonly stopTokens: number[];
  readonly decode: (ids: number[]) => string;
  readonly say: (m: string) => void;
}

/**
 * One arm (already switched in) scores every reference, then answers every prompt in batches. An
 * answer's `seconds` is its share of its batch's wall time, so an arm's seconds sum to its
 * generation time and tokens/s is the batched rate.
 */
async function runArm({ model, items, results, o, stopTokens, decode, say }: ArmRun, arm: string, lora: boolean): Promise<void> {
  say(`arm ${arm}: ${items.length} prompts`);
  const likelihoods = [];
  for (const item of items) {
    o.signal?.throwIfAborted();
    likelihoods.push(item.scored ? await sequenceLikelihood(model, item.scored.tokens, item.scored.mask, lora) : null);
  }
  // The same seed for every arm and prompt: arms differ only by their weights.
  const answers = await generateBatch(
    model,
    items.map((i) => i.promptTokens),
    {
      maxTokens: o.maxTokens,
      temperature: o.sampling.temperature,
      topP: o.sampling.topP,
      topK: o.sampling.topK,
      seed: o.seed,
      stopTokens,
      lora,
      batchSize: o.batchSize,
      ...(o.signal ? { signal: o.signal } : {}),
    },
  );
  o.signal?.throwIfAborted();
  for (const [k, g] of answers.entries()) {
    const output: ArmOutput = { text: decode(g.tokens), tokens: g.tokens, finish_reason: g.finishReason, seconds: g.seconds, likelihood: likelihoods[k]! };
    results[k]!.outputs[arm] = output;
  }
}

/** The export check's inputs, before any model work: the arm exists, the files exist, llama.cpp loads. */
async function checkExportInputs(o: Options): Promise<void> {
  if (o.gguf.length === 0) return;
  const arms = [BASE_ARM, ...o.adapters.map((a) => a.name)];
  if (o.ggufArm !== undefined && !arms.includes(o.ggufArm)) throw new Error(`--gguf-arm ${o.ggufArm}: no such arm (arms: ${arms.join(', ')})`);
  for (const f of o.gguf) if (!(await stat(f).catch(() => undefined))?.isFile()) throw new Error(`--gguf ${f}: no such file`);
  await llama();
}

async function runExportChecks(o: Options, adapters: readonly ArmAdapter[], switcher: ArmSwitcher, model: NativeModel, items: readonly EvalItem[], say: (m: string) => void): Promise<ExportCheck[]> {
  if (o.gguf.length === 0) return [];
  const armName = o.ggufArm ?? adapters[0]?.name ?? BASE_ARM;
  const arm = adapters.find((a) => a.name === armName);
  if (!arm && armName !== BASE_ARM) throw new Error(`--gguf-arm ${armName}: no such arm (arms: ${[BASE_ARM, ...adapters.map((a) => a.name)].join(', ')})`);
  await switcher.use(arm);
  const sequences = items.map((i) => (i.scored ? { tokens: i.scored.tokens, mask: i.scored.mask } : { tokens: i.promptTokens }));
  const checks: ExportCheck[] = [];
  for (const gguf of o.gguf) {
    say(`export check: ${basename(gguf)} against ${armName}`);
    checks.push(await checkExport(gguf, model, arm !== undefined, armName, sequences));
  }
  return checks;
}

async function runJudge(o: Options, arms: readonly string[], results: readonly ItemResult[], say: (m: string) => void): Promise<JudgeResult> {
  const candidates = arms.filter((a) => a !== BASE_ARM);
  if (candidates.length === 0) throw new Error('--judge compares adapters with the base: give at least one --adapter');
  say(`judge ${o.judge!.model}: ${candidates.length * results.length} comparisons`);
  return judgeArms({
    model: o.judge!.model,
    ...(o.judge!.host !== undefined ? { host: o.judge!.host } : {}),
    baseline: BASE_ARM,
    candidates,
    cases: results.map((r) => ({ id: r.id, prompt: r.prompt, ...(r.reference !== null ? { reference: r.reference } : {}), answers: Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.text])) })),
    seed: o.seed,
    ...(o.signal ? { signal: o.signal } : {}),
  });
}
