/** `mlx-qlora prepare`: JSONL exports → prepared dataset (shards, manifest.json, report.json). */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { prepareDataset, type PrepareOptionsInput, type PrepareProgress } from '../../data/prepare.js';
import { formatReport } from '../../data/report.js';
import { type RecordFormat } from '../../data/record.js';
import { EMIT_FORMATS, type EmitFormat } from '../../data/emit.js';
import { fieldMappingSchema } from '../../data/field-mapping.js';
import { parseFormatSpec, type FormatOverride } from '../../data/format-overrides.js';
import { integerArg, numberArg } from './cli-numbers.js';
import { formatSelection, readSelection } from '../../data/since-filter.js';

const fraction = numberArg(0, 1);

/** A Jaccard threshold: 0 would call everything a duplicate, 1 only what exact dedupe already finds. */
function openFraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n >= 1) throw new InvalidArgumentError('expected a number strictly between 0 and 1');
  return n;
}

/** Collects `--format FORMAT` and `--format PATTERN=FORMAT` values (repeatable, or several after one flag). */
function formatSpec(value: string, previous: string[] = []): string[] {
  try {
    parseFormatSpec(value);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
  return [...previous, value];
}

/** One global format at most, and the per-file ones in the order given. */
export function splitFormatSpecs(specs: readonly string[]): { format?: RecordFormat; formatByFile: FormatOverride[] } {
  const formatByFile: FormatOverride[] = [];
  let format: RecordFormat | undefined;
  for (const spec of specs) {
    const parsed = parseFormatSpec(spec);
    if (parsed.pattern !== undefined) formatByFile.push({ pattern: parsed.pattern, format: parsed.format });
    else if (format !== undefined && format !== parsed.format) throw new InvalidArgumentError(`--format: two formats for every file (${format}, ${parsed.format}); use FILE=FORMAT for one file`);
    else format = parsed.format;
  }
  return { ...(format ? { format } : {}), formatByFile };
}

function mappingFile(path: string): ReturnType<typeof fieldMappingSchema.parse> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const r = fieldMappingSchema.safeParse(raw);
  if (!r.success) throw new InvalidArgumentError(`${path}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

interface PrepareFlags {
  model: string;
  input: string[];
  out: string;
  template?: string;
  format: string[];
  mapping?: ReturnType<typeof fieldMappingSchema.parse>;
  reasoning: 'omit' | 'inline';
  minQuality?: number;
  keepUnscored: boolean;
  minMessages: number;
  dedupe: boolean;
  nearDup: number | false;
  validFraction: number;
  testFraction: number;
  maxSeqLength: number;
  overlong: 'drop' | 'truncate';
  trainOn: 'assistant' | 'last-assistant' | 'all';
  strict: boolean;
  emit: EmitFormat[];
  ollamaModels?: string;
  progress: boolean;
  since?: string;
  replay: number;
  replaySeed: number;
  where: string[];
}

/** The prepare options the flags give. */
function prepareOptionsOf(flags: PrepareFlags): PrepareOptionsInput {
  return {
          model: flags.model,
          inputs: flags.input,
          outDir: flags.out,
          ...(flags.template ? { template: flags.template } : {}),
          ...splitFormatSpecs(flags.format),
          ...(flags.mapping ? { mapping: flags.mapping } : {}),
          ...(flags.ollamaModels ? { ollamaModelsDir: flags.ollamaModels } : {}),
          ...(flags.minQuality !== undefined ? { minQuality: flags.minQuality } : {}),
          reasoning: flags.reasoning,
          keepUnscored: flags.keepUnscored,
          minMessages: flags.minMessages,
          dedupe: flags.dedupe,
          nearDuplicateThreshold: flags.nearDup === false ? null : flags.nearDup,
          split: { valid: flags.validFraction, test: flags.testFraction },
          maxSeqLength: flags.maxSeqLength,
          overlong: flags.overlong,
          trainOn: flags.trainOn,
          strict: flags.strict,
          emit: flags.emit,
          selection: { ...(flags.since ? { since: flags.since } : {}), replay: flags.replay, replaySeed: flags.replaySeed, where: flags.where },
        };
}

/** A progress bar on a terminal (MB read, records); nothing when not a TTY or with --no-progress. */
function progressBar(enabled: boolean): { update: (p: PrepareProgress) => void; stop: () => void } {
  const bar =
    enabled && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          { stream: process.stderr, format: 'prepare |{bar}| {percentage}% {value}/{total} MB | {records} records | {eta_formatted}', hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  let started = false;
  return {
    update: (p) => {
      if (!bar) return;
      const mb = Math.round(p.bytesRead / 1e5) / 10;
      if (!started) {
        bar.start(Math.max(0.1, Math.round(p.totalBytes / 1e5) / 10), 0, { records: 0 });
        started = true;
      }
      bar.update(mb, { records: p.records });
    },
    stop: () => bar?.stop(),
  };
}

export function register(program: Command): void {
  program
    .command('prepare')
    .description('tokenize, mask, filter, dedupe and split JSONL conversations into a prepared dataset')
    .requiredOption('--model <model>', 'HF folder, tokenizer.json, .gguf file or Ollama name (supplies tokenizer and chat template)')
    .requiredOption('--input <paths...>', 'JSONL / JSONL.gz files or folders (searched recursively)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--template <name|file>', 'chat template: chatml, mistral, llama-3, alpaca or a .jinja file (default: the model\'s)')
    .option(
      '--format <format...>',
      'record format of every input, and/or FILE=FORMAT for one file (FILE may be a glob: "exports/*.jsonl=sharegpt"); default: detected per file',
      formatSpec,
      [],
    )
    .option('--mapping <file.json>', 'field-name mapping for exports whose fields are named differently', mappingFile)
    .addOption(new Option('--reasoning <mode>', 'ICEBURG reasoning chains: omit, or inline before the answer').choices(['omit', 'inline']).default('omit'))
    .option('--min-quality <q>', 'drop records scored below q (and unscored ones, unless --keep-unscored)', fraction)
    .option('--keep-unscored', 'keep records without a quality score under --min-quality', false)
    .option('--min-messages <n>', 'drop conversations with fewer messages', integerArg(0), 0)
    .option('--no-dedupe', 'keep exact and near duplicates')
    .option('--near-dup <jaccard>', 'near-duplicate Jaccard threshold, between 0 and 1', openFraction, 0.85)
    .option('--no-near-dup', 'only remove exact duplicates')
    .option('--valid-fraction <f>', 'share of records in the valid split', fraction, 0.05)
    .option('--test-fraction <f>', 'share of records in the test split', fraction, 0.05)
    .option('--max-seq-length <n>', 'maximum tokens per record (at least 2)', integerArg(2), 2048)
    .addOption(new Option('--overlong <policy>', 'records over --max-seq-length').choices(['drop', 'truncate']).default('drop'))
    .addOption(new Option('--train-on <what>', 'supervised tokens').choices(['assistant', 'last-assistant', 'all']).default('assistant'))
    .option('--strict', 'stop at the first bad line instead of reporting and skipping it', false)
    .addOption(new Option('--emit <formats...>', 'also write the cleaned records in these formats').choices([...EMIT_FORMATS]).default([]))
    .option('--ollama-models <dir>', 'Ollama models folder (default: $OLLAMA_MODELS or Ollama\'s default)')
    .option('--no-progress', 'no progress bar')
    .option('--since <dataset>', 'take only records new by content since this prepared folder (or its manifest.json)')
    .option('--replay <fraction>', 'with --since: take this fraction of the earlier records back', fraction, 0)
    .option('--replay-seed <n>', 'which earlier records --replay takes', integerArg(0), 0)
    .option('--where <field=value...>', 'only records whose field (dotted path; top level, then metadata) equals value; several: all must hold', (v: string, p: string[] = []) => [...p, v], [])
    .action(async (flags: PrepareFlags) => {
      const progress = progressBar(flags.progress);
      const { report } = await prepareDataset(prepareOptionsOf(flags), { onProgress: progress.update }).finally(progress.stop);
      process.stdout.write(`${formatReport(report)}\n${formatSelection(readSelection(flags.out))}\nWrote ${flags.out}/manifest.json and report.json\n`);
    });
}
