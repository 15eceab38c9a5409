/**
 * A real training run to export: a tiny random Mistral-shaped model whose widths are multiples of
 * 256 (so Q4_K_M uses real K-quant blocks rather than its fallbacks), with the ChatML Llama 2
 * tokenizer, trained for a few steps with LoRA on q/k/v/o, evaluated and checkpointed every 2.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { prepareDataset } from '../../lib/data/prepare.js';
import { BUILTIN_TEMPLATES } from '../../lib/tokenizer/builtin-templates.js';
import { train } from '../../lib/train/trainer.js';
import { writeSafetensorsModel } from '../fixtures/safetensors.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { conversation } from '../fixtures/train-fixture.js';
import { chatmlLlama2Files } from '../fixtures/tokenizers/real-tokenizers.js';

export interface ExportRun {
  tiny: TinyModel;
  /** The base as an HF folder (what the run trained on). */
  modelDir: string;
  /** The run folder: adapter/, checkpoints/step-000002, step-000004. */
  runDir: string;
  root: string;
}

export async function makeExportRun(options: { steps?: number } = {}): Promise<ExportRun> {
  const tiny = await makeTinyModel({ layers: 2, hidden: 256, heads: 4, kvHeads: 2, intermediate: 512, vocab: 32002, seed: 11 });
  // A larger final norm gain gives the random head the logit range a trained model has (see train-fixture.ts).
  const weights = new Map([...tiny.weights].map(([k, v]) => [k, { shape: v.shape, values: k === 'model.norm.weight' ? v.values.map((x) => x * 6) : v.values }]));
  await writeSafetensorsModel(tiny.hfDir, weights, 'F32');
  const files = chatmlLlama2Files();
  files.config.chat_template = BUILTIN_TEMPLATES.chatml;
  await writeFile(join(tiny.hfDir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(tiny.hfDir, 'tokenizer_config.json'), JSON.stringify(files.config));
  const jsonl = join(tiny.root, 'conversations.jsonl');
  await writeFile(jsonl, Array.from({ length: 16 }, (_, i) => JSON.stringify(conversation(i))).join('\n') + '\n');
  const prepared = join(tiny.root, 'prepared');
  await prepareDataset({ model: tiny.hfDir, inputs: [jsonl], outDir: prepared, maxSeqLength: 64, split: { valid: 0.25, test: 0 }, nearDuplicateThreshold: null });
  const runDir = join(tiny.root, 'run');
  const run = train({
    model: tiny.hfDir,
    data: { train: prepared, max_seq_length: 64 },
    lora: { rank: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
    quantization: { bits: 4, group_size: 64 },
    training: { learning_rate: 1e-2, batch_size: 2, grad_accumulation: 1, max_steps: options.steps ?? 4, warmup_steps: 1, seed: 7 },
    eval: { every_steps: 2, early_stopping_patience: 0 },
    checkpoint: { every_steps: 2, keep_last: 5 },
    output: runDir,
  });
  for await (const _event of run) {
    // drain: the run writes its own files
  }
  await run.done;
  return { tiny, modelDir: tiny.hfDir, runDir, root: tiny.root };
}
