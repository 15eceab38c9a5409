/**
 * `prepare`: JSONL exports → tokenized, masked, split, deduplicated shards + manifest + report.
 *
 * Two streaming passes keep memory flat whatever the corpus size:
 * 1. read every file line by line; validate, join quality, filter, render + tokenize + mask, hash;
 *    spill tokens, masks, a fixed-size row per record, dedupe keys and MinHash signatures to a
 *    temp folder;
 * 2. resolve duplicates (duplicate-index.ts), then copy the surviving records into their split's
 *    shards and fill the report's histograms.
 * What stays in memory per record is the dedupe union-find (≈5 bytes); quality scores from
 * quality_metrics files are held by conversation id (quality-join.ts).
 *
 * A record that cannot be used is rejected with its file:line and a reason, never silently: an
 * error (the line is wrong: bad JSON, schema, template or tokenizer failure; --strict stops at the
 * first) or filtered (the line is fine but left out: quality, length, failed agent generation).
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-file.js';
import { writeJsonInPieces } from '../io/json-pieces.js';
import { ConversationEncoder } from '../tokenizer/conversation-encoder.js';
import { loadModelTokenizer, type ModelTokenizer } from '../tokenizer/load-tokenizer.js';
import { planEpoch, planStats, batchPlanOptionsSchema } from './batch-plan.js';
import { BufferedFileWriter } from './buffered-file.js';
import { DuplicateIndex } from './duplicate-index.js';
import { EventLoopTurns } from './event-loop-turn.js';
import { formatRejection, StrictModeError, type Rejection } from './errors.js';
import { resolveFieldMapping } from './field-mapping.js';
import { formatChooser } from './format-overrides.js';
import { resolveInputs, type InputFile } from './inputs.js';
import { MANIFEST_FILE, MANIFEST_KIND, type Manifest } from './manifest.js';
import { lshParams, NUM_PERM } from './minhash.js';
import { parsePrepareOptions, type PrepareHooks, type PrepareOptions, type PrepareOptionsInput, type PrepareResult } from './prepare-options.js';
import { CandidateSpill, readCandidates, type PassOneContext } from './prepare-pass-one.js';
import { writeSurvivors } from './prepare-pass-two.js';
import { QualityJoin } from './quality-join.js';
import { MAX_EXAMPLES, reportTotals, type PrepareReport } from './report.js';
import { RecordSelection } from './since-filter.js';
import { SPLITS } from './split.js';

export { prepareOptionsSchema, parsePrepareOptions, type PrepareOptionsInput, type PrepareResult, type PrepareProgress, type PrepareHooks } from './prepare-options.js';

const OWN_FILE = /^(train|valid|test)-\d{5}\.(tokens\.i32|mask\.u8|lengths\.u32)$|^(manifest\.json|report\.json|rejections\.jsonl|content-hashes\.bin|selection\.json)$/;

function prepareOutDir(outDir: string): void {
  if (existsSync(outDir)) {
    const entries = readdirSync(outDir);
    const isOurs = entries.includes(MANIFEST_FILE) || entries.length === 0;
    if (!isOurs) throw new Error(`${outDir}: folder exists and is not a prepared dataset; choose an empty or new folder`);
    for (const e of entries) if (OWN_FILE.test(e) || e === 'tokenizer' || e === 'emit' || e.startsWith('.tmp-')) rmSync(join(outDir, e), { recursive: true, force: true });
  }
  mkdirSync(outDir, { recursive: true });
}

export async function prepareDataset(input: PrepareOptionsInput, hooks: PrepareHooks = {}): Promise<PrepareResult> {
  const opts = parsePrepareOptions(input);
  const started = performance.now();
  const model = await tokenizerFor(opts, hooks);
  const inputs = await inputFiles(opts);
  prepareOutDir(opts.outDir);
  const tmp = join(opts.outDir, `.tmp-${process.pid}`);
  mkdirSync(tmp, { recursive: true });

  const report = emptyReport(opts.maxSeqLength);
  const rejections = new BufferedFileWriter(join(opts.outDir, 'rejections.jsonl'));
  const ctx = await passOneContext(opts, model, report, rejections, tmp);
  const sources = await readCandidates(ctx, inputs, hooks);
  ctx.spill.close();
  rejections.close();

  const dup = await ctx.dupes?.finish(ctx.turns);
  if (dup) Object.assign(report.duplicates, { nearCandidates: dup.nearCandidates, nearAccepted: dup.nearAccepted });
  const survivors = await writeSurvivors({ opts, report, inputs, tmp, candidates: ctx.spill.count, dup, spilled: ctx.spill.records !== undefined, turns: ctx.turns });
  await rm(tmp, { recursive: true, force: true });

  // The tail is a few pieces of synchronous work; each gets the loop's turn before it.
  const manifest = buildManifest(opts, model, sources, survivors.splits, await writeTokenizerCopy(opts.outDir, model, ctx.turns));
  const batching = await batchingFigures(survivors.trainLengths, opts.reportBatchSize, opts.maxSeqLength, ctx.turns);
  finishReport(report, opts, inputs, survivors, batching, started);
  await ctx.turns.take();
  await writeFileAtomic(join(opts.outDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  await ctx.selection.finish(opts.outDir);
  await ctx.turns.take();
  await writeFileAtomic(join(opts.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  return { manifest, report };
}

/** The tokenizer and chat template come from the model (or a tokenizer the caller loaded). */
async function tokenizerFor(opts: PrepareOptions, hooks: PrepareHooks): Promise<ModelTokenizer> {
  const model =
    hooks.tokenizer ??
    (opts.model
      ? await loadModelTokenizer(opts.model, { ...(opts.template ? { template: opts.template } : {}), ...(opts.ollamaModelsDir ? { ollamaModelsDir: opts.ollamaModelsDir } : {}) })
      : undefined);
  if (!model) throw new Error('prepare needs --model (the model supplies the tokenizer and chat template)');
  return model;
}

async function inputFiles(opts: PrepareOptions): Promise<InputFile[]> {
  const chooser = formatChooser(opts.format, opts.formatByFile);
  const inputs = await resolveInputs(opts.inputs, opts.mapping ?? resolveFieldMapping(), (path) => chooser.choose(path), { exclude: [opts.outDir] });
  const unused = chooser.unused();
  if (unused.length > 0) throw new Error(`--format ${unused.map((o) => `${o.pattern}=${o.format}`).join(', ')}: matches no input file`);
  return inputs;
}

async function passOneContext(opts: PrepareOptions, model: ModelTokenizer, report: PrepareReport, rejections: BufferedFileWriter, tmp: string): Promise<PassOneContext> {
  const turns = new EventLoopTurns();
  const lsh = opts.dedupe && opts.nearDuplicateThreshold !== null ? lshParams(opts.nearDuplicateThreshold) : undefined;
  const dupes = opts.dedupe ? await DuplicateIndex.open(join(tmp, 'dedupe'), lsh ? { near: { signatureBytes: NUM_PERM, acceptAt: lsh.acceptAt } } : {}, turns) : undefined;
  if (lsh) report.duplicates.nearDetection = { threshold: opts.nearDuplicateThreshold!, acceptAt: lsh.acceptAt, bands: lsh.bands, rows: lsh.rows, permutations: NUM_PERM };
  const reject = (r: Rejection, kind: 'errors' | 'filtered'): void => {
    if (opts.strict && kind === 'errors') throw new StrictModeError(r);
    report[kind][r.reason] = (report[kind][r.reason] ?? 0) + 1;
    if (report.rejectionExamples.length < MAX_EXAMPLES) report.rejectionExamples.push(formatRejection(r));
    rejections.write(Buffer.from(`${JSON.stringify(r)}\n`));
  };
  return {
    opts,
    report,
    encoder: new ConversationEncoder(model.tokenizer, model.template),
    templateName: model.template.name,
    mapping: opts.mapping ?? resolveFieldMapping(),
    selection: new RecordSelection(opts.selection),
    turns,
    lsh,
    dupes,
    spill: new CandidateSpill(tmp, opts.emit.length > 0),
    qualityJoin: new QualityJoin(),
    reject,
  };
}

function buildManifest(opts: PrepareOptions, model: ModelTokenizer, sources: Manifest['sources'], splits: Manifest['splits'], tokenizerDir: string): Manifest {
  return {
    kind: MANIFEST_KIND,
    version: 1,
    createdAt: new Date().toISOString(),
    tokenizer: {
      model: opts.model ?? model.vocabPath,
      kind: model.kind,
      dir: tokenizerDir,
      sha256: model.tokenizer.fingerprint,
      vocabSize: model.tokenizer.vocabSize,
      bosId: model.tokenizer.bosId ?? null,
      eosId: model.tokenizer.eosId ?? null,
      padId: model.tokenizer.padId ?? null,
    },
    template: { name: model.template.name, sha256: model.template.sha256 },
    sources,
    options: {
      maxSeqLength: opts.maxSeqLength,
      overlong: opts.overlong,
      trainOn: opts.trainOn,
      splitFractions: opts.split,
      minQuality: opts.minQuality ?? null,
      keepUnscored: opts.keepUnscored,
      minMessages: opts.minMessages,
      dedupe: opts.dedupe,
      nearDuplicateThreshold: opts.dedupe ? opts.nearDuplicateThreshold : null,
    },
    splits,
  };
}

function finishReport(
  report: PrepareReport,
  opts: PrepareOptions,
  inputs: readonly InputFile[],
  survivors: Awaited<ReturnType<typeof writeSurvivors>>,
  batching: PrepareReport['batching'],
  started: number,
): void {
  const totalBytes = inputs.reduce((n, f) => n + f.bytes, 0);
  report.files = inputs.length;
  report.bytes = totalBytes;
  report.tokenLength = survivors.lengths.summary();
  for (const s of SPLITS) report.splits[s] = { records: survivors.splits[s].records, tokens: survivors.splits[s].tokens, trainedTokens: survivors.splits[s].trainedTokens };
  report.totals = reportTotals(report);
  report.batching = batching;
  report.elapsedSeconds = (performance.now() - started) / 1000;
  const parsed = Object.values(report.recordsByFormat).reduce((a, b) => a + b, 0);
  report.recordsPerSecond = parsed / report.elapsedSeconds;
  report.megabytesPerSecond = totalBytes / 1e6 / report.elapsedSeconds;
}

function emptyReport(maxSeqLength: number): PrepareReport {
  const split = () => ({ records: 0, tokens: 0, trainedTokens: 0 });
  return {
    files: 0,
    lines: 0,
    blankLines: 0,
    bytes: 0,
    recordsByFormat: {},
    errors: {},
    filtered: {},
    rejectionExamples: [],
    totals: { rejected: 0, filtered: 0, duplicates: 0, kept: 0 },
    quality: { scored: 0, unscored: 0, histogram: new Array<number>(10).fill(0), metricsRead: 0, metricsWithoutScore: 0, metricsJoined: 0, metricsUnmatched: 0 },
    length: { maxSeqLength, truncated: 0, truncatedAway: 0, dropped: 0 },
    duplicates: { exact: 0, near: 0, nearDetection: null, nearCandidates: 0, nearAccepted: 0, examples: [] },
    tokenLength: { records: 0, mean: 0, p50: 0, p90: 0, p95: 0, p99: 0, max: 0 },
    turnsPerConversation: {},
    splits: { train: split(), valid: split(), test: split() },
    batching: { batchSize: 0, maxSeqLength, bucketPaddingFraction: 0, packFillRatio: 0, packPaddingFraction: 0 },
    emitted: {},
    notRepresentable: {},
    emittedWithExtraWeight: {},
    elapsedSeconds: 0,
    recordsPerSecond: 0,
    megabytesPerSecond: 0,
  };
}

/** A vocabulary with its merges is megabytes of JSON: it is written in pieces, with turns between. */
async function writeTokenizerCopy(outDir: string, model: ModelTokenizer, turns: EventLoopTurns): Promise<string> {
  const dir = join(outDir, 'tokenizer');
  await mkdir(dir, { recursive: true });
  const { tokenizer, config } = model.tokenizer.spec;
  await writeJsonInPieces(join(dir, 'tokenizer.json'), tokenizer, () => turns.take());
  // The template actually used goes into the copy's config, so reloading it renders identically.
  await writeFileAtomic(join(dir, 'tokenizer_config.json'), `${JSON.stringify({ ...config, chat_template: model.template.source }, null, 2)}\n`);
  return 'tokenizer';
}

async function batchingFigures(trainLengths: number[], batchSize: number, maxSeqLength: number, turns: EventLoopTurns): Promise<PrepareReport['batching']> {
  const lengths = Uint32Array.from(trainLengths);
  const base = { batchSize, maxSeqLength: maxSeqLength - 1 };
  const bucketOpts = batchPlanOptionsSchema.parse({ ...base, mode: 'bucket' });
  await turns.take();
  const bucket = planStats(planEpoch(lengths, bucketOpts, 0), lengths, bucketOpts);
  const packOpts = batchPlanOptionsSchema.parse({ ...base, mode: 'pack' });
  await turns.take();
  const pack = planStats(planEpoch(lengths, packOpts, 0), lengths, packOpts);
  return { batchSize, maxSeqLength: base.maxSeqLength, bucketPaddingFraction: bucket.paddingFraction, packFillRatio: pack.fillRatio, packPaddingFraction: pack.paddingFraction };
}
