/** `mlx-qlora eval`: base vs adapters on an eval set, an optional judge and export check, a report in --out. */
import { basename } from 'node:path';
import { Command } from 'commander';
import { evaluate } from '../../eval/evaluate.js';
import { formatRejection } from '../../data/errors.js';
import { bitsArg, groupSizeArg, integerArg, numberArg, quantizationOf } from './cli-numbers.js';

interface EvalFlags {
  model: string;
  adapter: string[];
  data: string;
  out: string;
  seed: number;
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  batchSize: number;
  category?: string[];
  template?: string;
  judge?: string;
  gguf: string[];
  ggufArm?: string;
  bits?: number | 'none';
  groupSize?: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `NAME=PATH`, or PATH named after its folder (a run folder's name, or the adapter folder's). */
export function adapterArg(spec: string, index: number): { name: string; path: string } {
  const eq = spec.indexOf('=');
  if (eq > 0 && /^[\w.-]+$/.test(spec.slice(0, eq))) return { name: spec.slice(0, eq), path: spec.slice(eq + 1) };
  const folder = basename(spec.replace(/[/\\]+$/, ''));
  return { name: /^[\w.-]+$/.test(folder) && folder !== 'base' ? folder : `adapter${index + 1}`, path: spec };
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('compare the base model with adapters on an eval set: likelihood, answers, metrics, optional judge and GGUF export check; writes report.json/md/html')
    .requiredOption('--model <model>', 'base model: HF folder, .gguf file or Ollama name')
    .option('--adapter <[name=]dir>', 'adapter folder or run folder (repeatable); each is an arm beside the base', collect, [])
    .requiredOption('--data <file|dir>', 'eval JSONL (prompt or messages, optional reference, category) or a prepared folder (its test split)')
    .requiredOption('--out <dir>', 'where report.json, report.md and report.html go')
    .option('--seed <s>', 'sampling (and judge order) seed, the same for every arm', integerArg(0), 0)
    .option('--temperature <t>', '0 is greedy', numberArg(0, 10), 0)
    .option('--top-p <p>', 'nucleus sampling', numberArg(0, 1), 1)
    .option('--top-k <k>', '0 is off', integerArg(0), 0)
    .option('--max-tokens <n>', 'most tokens per answer', integerArg(1), 128)
    .option('--batch-size <n>', 'prompts generated together in one KV cache (greedy answers equal one at a time)', integerArg(1), 8)
    .option('--category <name>', 'only this category (repeatable)', collect)
    .option('--template <name|file>', "chat template (default: the model's)")
    .option('--judge <model>', 'pairwise judge: a model Ollama serves (OLLAMA_HOST)')
    .option('--gguf <file>', 'exported GGUF to check against our model through llama.cpp (repeatable)', collect, [])
    .option('--gguf-arm <name>', 'the arm the GGUFs are compared with (default: the first adapter)')
    .option('--bits <n>', "base quantization bits or 'none' (default: what the adapters record; else the model as stored)", bitsArg)
    .option('--group-size <n>', 'quantization group size (default 64 with --bits)', groupSizeArg)
    .action(async (flags: EvalFlags) => {
      const controller = new AbortController();
      const onSigint = () => controller.abort();
      process.once('SIGINT', onSigint);
      try {
        const quantization = quantizationOf(flags.bits, flags.groupSize);
        const { report, files } = await evaluate({
          model: flags.model,
          adapters: flags.adapter.map(adapterArg),
          data: flags.data,
          out: flags.out,
          seed: flags.seed,
          sampling: { temperature: flags.temperature, topP: flags.topP, topK: flags.topK },
          maxTokens: flags.maxTokens,
          batchSize: flags.batchSize,
          ...(flags.category ? { categories: flags.category } : {}),
          ...(flags.template ? { template: flags.template } : {}),
          ...(quantization ? { quantization } : {}),
          ...(flags.judge ? { judge: { model: flags.judge } } : {}),
          gguf: flags.gguf,
          ...(flags.ggufArm ? { ggufArm: flags.ggufArm } : {}),
          signal: controller.signal,
          onProgress: (m) => process.stderr.write(`${m}\n`),
        });
        for (const r of report.data.rejected) process.stderr.write(`${formatRejection(r)}\n`);
        for (const g of report.generation.filter((row) => row.category === '(all)')) {
          process.stdout.write(`${g.arm}: exact match ${g.exact_match === null ? '–' : (g.exact_match * 100).toFixed(1) + '%'}, token F1 ${g.token_f1?.toFixed(3) ?? '–'}, ${g.tokens_per_sec?.toFixed(1) ?? '–'} tokens/s\n`);
        }
        for (const f of files) process.stdout.write(`wrote ${f}\n`);
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
