/**
 * Issue 5's benchmark: `train()` on the ~60M Mistral-shaped reference model of the model bench
 * (4-bit base, LoRA r16 on every linear, batch 4 × 512 packed), from an HF folder and a prepared
 * synthetic ICEBURG corpus: steps/s, tokens/s, and the share of wall time outside the native step.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareDataset } from '../lib/data/prepare.js';
import { saveSafetensors } from '../lib/io/safetensors.js';
import { randomNormal, tensor, type Tensor } from '../lib/tensor.js';
import { BUILTIN_TEMPLATES } from '../lib/tokenizer/builtin-templates.js';
import type { StepEvent } from '../lib/train/run-events.js';
import { train } from '../lib/train/trainer.js';
import { writeSyntheticCorpus } from '../test/fixtures/data-corpus.js';
import { llama2Files } from '../test/fixtures/tokenizers/real-tokenizers.js';
import type { BenchTable } from './table.js';

const hidden = 512;
const layers = 8;
const inter = 1536;
const vocab = 32000;
const kv = 128;
/** Steps before timing starts: MLX allocates and the caches fill on the first. */
const WARMUP_STEPS = 1;
/** Enough steps that the outside-share is a stable figure, not one step's noise. */
const TIMED_STEPS = 12;

async function writeReferenceModel(dir: string): Promise<void> {
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['MistralForCausalLM'],
      model_type: 'mistral',
      vocab_size: vocab,
      hidden_size: hidden,
      intermediate_size: inter,
      num_hidden_layers: layers,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-5,
      rope_theta: 1e6,
      tie_word_embeddings: false,
    }),
  );
  const tensors: Record<string, Tensor> = {};
  let seed = 1;
  const ones = await tensor(new Float32Array(hidden).fill(1));
  const mat = (rows: number, cols: number) => randomNormal([rows, cols], { seed: seed++, scale: 1 / Math.sqrt(cols) });
  tensors['model.embed_tokens.weight'] = await randomNormal([vocab, hidden], { seed: seed++, scale: 0.02 });
  tensors['model.norm.weight'] = ones;
  tensors['lm_head.weight'] = await mat(vocab, hidden);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    tensors[`${p}.input_layernorm.weight`] = ones;
    tensors[`${p}.post_attention_layernorm.weight`] = ones;
    tensors[`${p}.self_attn.q_proj.weight`] = await mat(hidden, hidden);
    tensors[`${p}.self_attn.k_proj.weight`] = await mat(kv, hidden);
    tensors[`${p}.self_attn.v_proj.weight`] = await mat(kv, hidden);
    tensors[`${p}.self_attn.o_proj.weight`] = await mat(hidden, hidden);
    tensors[`${p}.mlp.gate_proj.weight`] = await mat(inter, hidden);
    tensors[`${p}.mlp.up_proj.weight`] = await mat(inter, hidden);
    tensors[`${p}.mlp.down_proj.weight`] = await mat(hidden, inter);
  }
  await saveSafetensors(join(dir, 'model.safetensors'), tensors);
  for (const t of new Set(Object.values(tensors))) t.dispose();
  const files = llama2Files();
  files.config.chat_template = BUILTIN_TEMPLATES.mistral;
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
}

export default async function bench(): Promise<BenchTable> {
  const root = await mkdtemp(join(tmpdir(), 'mlxq-train-bench-'));
  try {
    const modelDir = join(root, 'model');
    await mkdir(modelDir);
    await writeReferenceModel(modelDir);
    const jsonl = join(root, 'conversations.jsonl');
    await writeSyntheticCorpus(jsonl, 1500);
    const prepared = join(root, 'prepared');
    await prepareDataset({ model: modelDir, inputs: [jsonl], outDir: prepared, maxSeqLength: 512 });

    const steps: StepEvent[] = [];
    /** performance.now() when each step event reached this loop. */
    const stepAt: number[] = [];
    const start = performance.now();
    let loopStart = 0;
    const run = train({
      model: modelDir,
      data: { train: prepared, max_seq_length: 512, packing: true },
      lora: { rank: 16, alpha: 32, dropout: 0.05, targets: 'all-linear' },
      quantization: { bits: 4, group_size: 64 },
      training: { learning_rate: 2e-4, batch_size: 4, grad_accumulation: 1, max_steps: WARMUP_STEPS + TIMED_STEPS, warmup_steps: 0, grad_checkpointing: false },
      eval: { every_steps: 0, early_stopping_patience: 0, max_batches: 1 },
      checkpoint: { every_steps: 0, keep_last: 1 },
      output: join(root, 'run'),
    });
    for await (const e of run) {
      if (e.type === 'start') loopStart = performance.now();
      if (e.type === 'step') {
        steps.push(e);
        stepAt.push(performance.now());
      }
    }
    const done = await run.done;
    const end = performance.now();
    // The window runs from the last warm-up step's event to the last step's: every timed loop
    // iteration whole, with what happens between native calls (batch assembly, the memory()
    // round trip, events, metrics lines), which the steps' own step_seconds leave out.
    const timed = steps.slice(WARMUP_STEPS);
    const wall = (stepAt.at(-1)! - stepAt[WARMUP_STEPS - 1]!) / 1000;
    const native = timed.reduce((s, e) => s + e.native_seconds, 0);
    const tokens = timed.reduce((s, e) => s + e.tokens, 0);
    const supervised = timed.reduce((s, e) => s + e.supervised_tokens, 0);
    return {
      title: 'Trainer: train() on the 60M reference model (4-bit, LoRA r16 all-linear, 4 × 512 packed)',
      rows: [
        { name: 'steps/s', value: timed.length / wall, unit: 'step/s' },
        { name: 'tokens/s (real, padding excluded)', value: tokens / wall, unit: 'tok/s', baseline: 18, baselineLabel: 'mlx-lm trainer' },
        { name: 'supervised tokens/s', value: supervised / wall, unit: 'tok/s' },
        { name: 'share of loop wall time outside the native step', value: (wall - native) / wall, unit: 'fraction', goal: { op: '<=', target: 0.02 } },
        { name: 'model load + data open (before step 1)', value: (loopStart - start) / 1000, unit: 's' },
        { name: `warm-up (${WARMUP_STEPS} step${WARMUP_STEPS > 1 ? 's' : ''}, not timed)`, value: (stepAt[WARMUP_STEPS - 1]! - loopStart) / 1000, unit: 's' },
        { name: 'after the last step: final eval, checkpoint, adapter', value: (end - stepAt.at(-1)!) / 1000, unit: 's' },
      ],
      notes: [`${timed.length} timed steps over ${wall.toFixed(1)} s after ${WARMUP_STEPS} warm-up; ${steps.length} steps in all, done: ${done.reason}`],
    };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
