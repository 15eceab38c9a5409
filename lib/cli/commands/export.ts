/** `mlx-qlora export`: a run, adapter or base model → GGUF (adapter or fused), PEFT, Modelfile, Ollama. */
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { exportModel, type ExportResult } from '../../export/export-model.js';
import { EXPORT_GGUF_KINDS, type ExportOptionsInput, type ExportProgress } from '../../export/export-options.js';
import { integerArg } from './cli-numbers.js';

interface ExportFlags {
  run?: string;
  checkpoint?: string;
  adapter?: string;
  model?: string;
  gguf: string;
  out: string;
  peft?: string;
  modelfile?: boolean;
  ollama?: string;
  template?: string;
  system?: string;
  fallback?: 'fused';
  threads?: number;
  name?: string;
  adapterDtype: 'f32' | 'f16';
  progress: boolean;
}

/*
 * Progress on stderr: a bar per phase (tensors written, Ollama upload) on a terminal, and plain
 * lines elsewhere (a log or a pipe gets a line per tenth of the tensors, not a redraw).
 */
export interface ProgressView {
  update(p: ExportProgress): void;
  stop(): void;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function progressView(stream: NodeJS.WriteStream = process.stderr, enabled = true): ProgressView {
  return stream.isTTY && enabled ? barView(stream) : lineView(stream, enabled);
}

function lineView(stream: NodeJS.WriteStream, enabled: boolean): ProgressView {
  let lastTenth = -1;
  let lastStatus = '';
  const say = (line: string) => {
    if (enabled) stream.write(`${line}\n`);
  };
  return {
    update(p) {
      if (p.phase === 'load') say(`loading ${p.what}`);
      else if (p.phase === 'note') stream.write(`${p.message}\n`);
      else if (p.phase === 'ollama') {
        if (p.status !== lastStatus) say(`ollama: ${p.status}`);
        lastStatus = p.status;
      } else {
        const tenth = p.total > 0 ? Math.floor((10 * p.done) / p.total) : 10;
        if (tenth !== lastTenth) say(`${p.file}: ${p.done}/${p.total} tensors, ${mib(p.bytes)}`);
        lastTenth = tenth;
      }
    },
    stop() {},
  };
}

function barView(stream: NodeJS.WriteStream): ProgressView {
  let bar: cliProgress.SingleBar | undefined;
  let barPhase: string | undefined;
  const stopBar = () => {
    bar?.stop();
    bar = undefined;
    barPhase = undefined;
  };
  const ensureBar = (phase: string, format: string, total: number) => {
    if (barPhase === phase && bar) return bar;
    stopBar();
    bar = new cliProgress.SingleBar({ stream, format, hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { tensor: '', status: '', mib: '' });
    barPhase = phase;
    return bar;
  };
  return {
    update(p) {
      if (p.phase === 'load' || p.phase === 'note') {
        stopBar();
        stream.write(`${p.phase === 'load' ? `loading ${p.what}` : p.message}\n`);
      } else if (p.phase === 'tensors') {
        ensureBar('tensors', 'tensors {value}/{total} |{bar}| {mib} | {tensor}', p.total).update(p.done, { tensor: p.tensor, mib: mib(p.bytes) });
      } else if (p.completed !== undefined && p.total !== undefined && p.total > 0) {
        ensureBar('upload', 'ollama {status} |{bar}| {percentage}%', p.total).update(p.completed, { status: p.status });
      } else {
        stopBar();
        stream.write(`ollama: ${p.status}\n`);
      }
    },
    stop: stopBar,
  };
}

function checkpointArg(value: string): string {
  if (value === 'best' || value === 'latest' || /^step-\d+$/.test(value)) return value;
  throw new InvalidArgumentError('expected best, latest or step-N');
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function summary(r: ExportResult): string[] {
  const lines = [`exported ${r.input.description}`, `wrote ${r.out} (${r.type}, ${r.tensors} tensors, ${gib(r.bytes)})`];
  if (r.modelfile) lines.push(`wrote ${r.modelfile}`);
  if (r.peft) lines.push(`wrote PEFT adapter ${r.peft}`);
  if (r.fallback) lines.push(`wrote ${r.fallback.out} (fused q4_k_m, ${r.fallback.tensors} tensors, ${gib(r.fallback.bytes)})${r.fallback.modelfile ? ` and ${r.fallback.modelfile}` : ''}`);
  if (r.ollama) lines.push(`registered with Ollama as ${r.ollama.model}${r.fallback ? ' (the fused model: Ollama refused the adapter)' : ''}; run it with: ollama run ${r.ollama.model}`);
  return lines;
}

function optionsOf(flags: ExportFlags, signal: AbortSignal, onProgress: ExportOptionsInput['onProgress']): ExportOptionsInput {
  const { progress: _progress, checkpoint, gguf, ...rest } = flags;
  return {
    ...rest,
    ...(checkpoint !== undefined ? { checkpoint } : {}),
    gguf: gguf as ExportOptionsInput['gguf'],
    modelfile: flags.modelfile ?? false,
    signal,
    ...(onProgress ? { onProgress } : {}),
  };
}

export function register(program: Command): void {
  program
    .command('export')
    .description('write a GGUF for llama.cpp and Ollama: the LoRA adapter, or the model with the adapter merged in (or a base model alone)')
    .option('--run <dir>', 'a training run folder (its final adapter, or --checkpoint)')
    .option('--checkpoint <which>', 'with --run: best, latest or step-N', checkpointArg)
    .option('--adapter <dir>', 'an adapter folder (ours, mlx-lm or PEFT)')
    .option('--model <model>', 'the base model (HF folder, .gguf, Ollama name); default: the one the adapter names')
    .addOption(new Option('--gguf <type>', 'what to write').choices(EXPORT_GGUF_KINDS).makeOptionMandatory())
    .requiredOption('--out <file.gguf>', 'the GGUF file to write')
    .option('--peft <dir>', 'also write the adapter as a PEFT folder')
    .option('--modelfile', 'also write an Ollama Modelfile next to --out (<name>.Modelfile)')
    .option('--ollama <name>', 'register the result with Ollama; a name ending in -v takes the next free version (-v1, -v2, …)')
    .option('--template <file>', "an Ollama (Go) template for the Modelfile, when the base's chat template is not one we translate")
    .option('--system <text>', 'a SYSTEM prompt for the Modelfile')
    .addOption(new Option('--fallback <what>', 'when Ollama refuses the adapter, export and register the fused Q4_K_M model instead').choices(['fused']))
    .option('--threads <n>', 'encoder threads (default: all cores)', integerArg(1))
    .option('--name <name>', 'general.name of the GGUF')
    .addOption(new Option('--adapter-dtype <dtype>', 'adapter GGUF tensor type').choices(['f32', 'f16']).default('f32'))
    .option('--no-progress', 'no progress output')
    .action(async (flags: ExportFlags) => {
      const controller = new AbortController();
      const onSigint = () => {
        process.stderr.write('\nstopping: the partial output is removed\n');
        controller.abort();
      };
      process.once('SIGINT', onSigint);
      const view = progressView(process.stderr, flags.progress);
      try {
        const result = await exportModel(optionsOf(flags, controller.signal, (p) => view.update(p)));
        view.stop();
        process.stdout.write(`${summary(result).join('\n')}\n`);
      } finally {
        view.stop();
        process.off('SIGINT', onSigint);
      }
    });
}
