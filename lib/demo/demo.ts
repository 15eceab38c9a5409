/**
 * `mlx-qlora demo`: the whole flow on a built-in tiny model and generated ICEBURG-style logs, in
 * about a minute on a CPU — prepare → train → evaluate → export GGUF (adapter and fused) →
 * record the version → register with Ollama when one answers. Every stage uses the same public
 * API a user's script would.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { prepareDataset } from '../data/prepare.js';
import { exportModel, type ExportResult } from '../export/export-model.js';
import { ollamaHostUrl } from '../export/ollama-connection.js';
import { openRegistry, type ModelVersion } from '../rollout/registry.js';
import { train } from '../train/trainer.js';
import { demoConversations } from './demo-data.js';
import { writeDemoModel } from './demo-model.js';
import { runDemoEval, type DemoEvalSummary } from './demo-eval.js';

export interface DemoOptions {
  /** Folder for everything the demo writes; emptied first. */
  readonly out: string;
  readonly steps?: number;
  /** Register with the Ollama at this host (default $OLLAMA_HOST) when it answers. */
  readonly ollamaHost?: string;
  readonly ollama?: boolean;
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
}

export interface DemoResult {
  readonly out: string;
  readonly base: string;
  readonly firstLoss: number;
  readonly lastLoss: number;
  readonly eval: DemoEvalSummary;
  readonly exports: readonly ExportResult[];
  readonly version: ModelVersion;
  /** The Ollama model name, or why registration was skipped. */
  readonly ollama: { name: string } | { skipped: string };
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether an Ollama server answers at `host` within a second. */
async function ollamaAnswers(host: string): Promise<boolean> {
  try {
    const res = await fetch(new URL('/api/version', host), { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

async function trainDemo(base: string, prepared: string, output: string, steps: number, signal: AbortSignal | undefined, log: (l: string) => void): Promise<{ first: number; last: number; configHash: string }> {
  const run = train(
    {
      model: base,
      data: { train: prepared, max_seq_length: 128 },
      lora: { rank: 8, alpha: 16, dropout: 0, targets: 'all-linear' },
      quantization: { bits: 4, group_size: 32 },
      training: { learning_rate: 2e-2, batch_size: 4, grad_accumulation: 1, max_steps: steps, warmup_steps: 5, seed: 1, grad_checkpointing: false },
      eval: { every_steps: Math.max(1, Math.floor(steps / 3)), early_stopping_patience: 0 },
      checkpoint: { every_steps: steps, keep_last: 1 },
      output,
    },
    signal ? { signal } : {},
  );
  const losses: number[] = [];
  let configHash = '';
  for await (const event of run) {
    if (event.type === 'start') configHash = event.config_hash;
    if (event.type === 'step') {
      losses.push(event.loss);
      if (event.step % 10 === 0 || event.step === steps) log(`  step ${event.step}/${steps}: loss ${event.loss.toFixed(3)}`);
    }
    if (event.type === 'eval' && event.val_loss !== null) log(`  step ${event.step}: validation loss ${event.val_loss.toFixed(3)}`);
  }
  const done = await run.done;
  if (done.reason !== 'completed') throw new Error(`demo: training ended early (${done.reason})`);
  return { first: losses[0]!, last: losses.at(-1)!, configHash };
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const log = options.log ?? (() => undefined);
  const out = resolve(options.out);
  const steps = options.steps ?? 200;
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, 'data'), { recursive: true });

  log('1/6 model: a tiny random Llama-shaped GGUF with a ChatML vocabulary');
  const { path: base, parameters } = await writeDemoModel(join(out, 'base.gguf'));
  log(`  ${base} (${parameters.toLocaleString('en')} parameters)`);

  log('2/6 prepare: ICEBURG-style conversation logs → tokenized, filtered, deduplicated shards');
  const jsonl = join(out, 'data', 'conversations.jsonl');
  await writeFile(jsonl, demoConversations(160).map((c) => JSON.stringify(c)).join('\n') + '\n');
  const prepared = join(out, 'prepared');
  const { report, manifest } = await prepareDataset({ model: base, inputs: [jsonl], outDir: prepared, minQuality: 0.8, maxSeqLength: 128, split: { valid: 0.15, test: 0 } });
  log(`  ${report.totals.kept} records kept (filtered ${report.totals.filtered}, duplicates ${report.totals.duplicates}, rejected ${report.totals.rejected})`);

  log(`3/6 train: QLoRA (4-bit base, LoRA r8 on every linear layer), ${steps} steps`);
  const run = join(out, 'run');
  const trained = await trainDemo(base, prepared, run, steps, options.signal, log);

  log('4/6 evaluate: base vs tuned on prompts from the logs');
  const evalSummary = await runDemoEval(base, join(run, 'adapter'), join(out, 'eval'));
  log(`  exact match: base ${evalSummary.base.exactMatch.toFixed(2)}, tuned ${evalSummary.tuned.exactMatch.toFixed(2)}; loss base ${evalSummary.base.loss.toFixed(3)}, tuned ${evalSummary.tuned.loss.toFixed(3)}`);

  log('5/6 export: the adapter GGUF (for ADAPTER) and the fused Q8_0 GGUF, each with a Modelfile');
  const exportDir = join(out, 'export');
  await mkdir(exportDir, { recursive: true });
  const host = ollamaHostUrl(options.ollamaHost);
  const register = options.ollama !== false && (await ollamaAnswers(host));
  const adapterGguf = await exportModel({ run, gguf: 'adapter', out: join(exportDir, 'iceburg-demo-adapter.gguf'), modelfile: true });
  const fused = await exportModel({ run, gguf: 'q8_0', out: join(exportDir, 'iceburg-demo-q8_0.gguf'), modelfile: true, ...(register ? { ollama: 'iceburg-demo-v', ollamaHost: host } : {}) });
  for (const e of [adapterGguf, fused]) log(`  ${e.out} (${(e.bytes / 1024).toFixed(0)} KiB)${e.modelfile ? ` + ${e.modelfile}` : ''}`);

  log('6/6 version: recorded in versions.json, registered with Ollama when one answers');
  const ollama: DemoResult['ollama'] = fused.ollama
    ? { name: fused.ollama.model }
    : { skipped: options.ollama === false ? 'not asked' : `Ollama does not answer at ${host}` };
  log('name' in ollama ? `  registered as ${ollama.name}: ollama run ${ollama.name}` : `  Ollama: ${ollama.skipped}; to register later: ollama create iceburg-demo -f ${fused.modelfile ?? ''}`);
  const registry = openRegistry(out);
  const version = await registry.add({
    name: 'iceburg-demo-v1',
    parent: null,
    created: new Date().toISOString(),
    base_model: base,
    adapter: join(run, 'adapter'),
    config_hash: trained.configHash,
    data_manifest_hash: createHash('sha256').update(JSON.stringify(manifest)).digest('hex'),
    eval: { ...evalSummary },
    exports: await Promise.all([adapterGguf, fused].map(async (e) => ({ path: e.out, sha256: await sha256(e.out), type: e.type, bytes: e.bytes }))),
    ...('name' in ollama ? { ollama: ollama.name } : {}),
  });
  await registry.promote(version.name);
  return { out, base, firstLoss: trained.first, lastLoss: trained.last, eval: evalSummary, exports: [adapterGguf, fused], version: await registry.get(version.name), ollama };
}
