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
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConversationEncoder, type EncodedRecord, type TrainOn } from '../tokenizer/conversation-encoder.js';
import { loadModelTokenizer, type ModelTokenizer } from '../tokenizer/load-tokenizer.js';
import { TemplateRenderError } from '../tokenizer/chat-template.js';
import { OffsetAlignmentError } from '../tokenizer/offsets.js';
import { TemplateSpanError } from '../tokenizer/span-render.js';
import { planEpoch, planStats, batchPlanOptionsSchema } from './batch-plan.js';
import { BufferedFileWriter, SequentialFileReader } from './buffered-file.js';
import { hashNormalized, normalizedContent } from './content-hash.js';
import { DUPLICATE_STATUS, DuplicateIndex, type DuplicateResult } from './duplicate-index.js';
import { carriesExtraWeight, EMIT_FORMATS, emitRecord, spillRecord, unspillRecord, type EmitFormat } from './emit.js';
import { EventLoopTurns } from './event-loop-turn.js';
import { formatRejection, StrictModeError, type Rejection, type RejectionReason } from './errors.js';
import { fieldMappingSchema, resolveFieldMapping } from './field-mapping.js';
import { formatChooser } from './format-overrides.js';
import { resolveInputs, type InputFile } from './inputs.js';
import { readJsonlLines } from './jsonl-reader.js';
import { MANIFEST_FILE, MANIFEST_KIND, type Manifest } from './manifest.js';
import { bandKeys, compactSignature, lshParams, minhashSignature, NUM_PERM } from './minhash.js';
import { QualityJoin } from './quality-join.js';
import { RECORD_FORMATS, messageCount, type DataRecord, type RecordFormat } from './record.js';
import { readInputRecords } from './record-reader.js';
import { LengthHistogram, MAX_EXAMPLES, qualityBin, reportTotals, type PrepareReport } from './report.js';
import { SplitShardWriter } from './shard-writer.js';
import { recordSelectionSchema, RecordSelection } from './since-filter.js';
import { assignSplit, DEFAULT_SPLIT_FRACTIONS, SPLITS, splitFractionsSchema, type SplitName } from './split.js';

export const prepareOptionsSchema = z.object({
  /** HF folder, tokenizer.json, .gguf file or Ollama name; ignored when `tokenizer` is given. */
  model: z.string().optional(),
  inputs: z.array(z.string()).min(1),
  outDir: z.string(),
  template: z.string().optional(),
  ollamaModelsDir: z.string().optional(),
  /** Force one format for every input instead of detecting per file. */
  format: z.enum(RECORD_FORMATS).optional(),
  /** Per-file formats, before `format`: the first pattern matching a file wins (format-overrides.ts). */
  formatByFile: z.array(z.object({ pattern: z.string().min(1), format: z.enum(RECORD_FORMATS) })).default([]),
  /** Field names of exports that name them differently (field-mapping.ts). */
  mapping: fieldMappingSchema.optional(),
  reasoning: z.enum(['omit', 'inline']).default('omit'),
  minQuality: z.number().min(0).max(1).optional(),
  keepUnscored: z.boolean().default(false),
  minMessages: z.number().int().nonnegative().default(0),
  dedupe: z.boolean().default(true),
  /** Jaccard threshold for near duplicates; null turns near-duplicate detection off. */
  nearDuplicateThreshold: z.number().gt(0).lt(1).nullable().default(0.85),
  split: splitFractionsSchema.default(DEFAULT_SPLIT_FRACTIONS),
  maxSeqLength: z.number().int().min(2).default(2048),
  overlong: z.enum(['drop', 'truncate']).default('drop'),
  trainOn: z.enum(['assistant', 'last-assistant', 'all']).default('assistant'),
  strict: z.boolean().default(false),
  emit: z.array(z.enum(EMIT_FORMATS)).default([]),
  maxLineBytes: z.number().int().positive().optional(),
  shardTokens: z.number().int().positive().optional(),
  /** Rows per batch for the padding/fill figures in the report. */
  reportBatchSize: z.number().int().positive().default(4),
  /** --since / --replay / --where (since-filter.ts). */
  selection: recordSelectionSchema.default({ replay: 0, replaySeed: 0, where: [] }),
});
export type PrepareOptionsInput = z.input<typeof prepareOptionsSchema>;
type PrepareOptions = z.output<typeof prepareOptionsSchema>;

/** CLI flag of each option, so a bad value names what the user typed. */
const OPTION_FLAGS: Partial<Record<keyof PrepareOptions, string>> = {
  model: '--model',
  inputs: '--input',
  outDir: '--out',
  format: '--format',
  formatByFile: '--format',
  mapping: '--mapping',
  minQuality: '--min-quality',
  minMessages: '--min-messages',
  nearDuplicateThreshold: '--near-dup',
  split: '--valid-fraction / --test-fraction',
  maxSeqLength: '--max-seq-length',
  overlong: '--overlong',
  trainOn: '--train-on',
  emit: '--emit',
};

/** Validates options, with an error naming the option (and its flag) instead of a ZodError dump. */
export function parsePrepareOptions(input: PrepareOptionsInput): PrepareOptions {
  const r = prepareOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = String(issue.path[0] ?? '');
  const flag = OPTION_FLAGS[key as keyof PrepareOptions];
  throw new Error(`invalid prepare option ${issue.path.join('.') || '(options)'}${flag ? ` (${flag})` : ''}: ${issue.message}`);
}

export interface PrepareProgress {
  bytesRead: number;
  totalBytes: number;
  records: number;
  file: string;
}

export interface PrepareHooks {
  /** A tokenizer already loaded (tests, or `train` preparing raw JSONL itself). */
  tokenizer?: ModelTokenizer;
  onProgress?: (progress: PrepareProgress) => void;
}

export interface PrepareResult {
  manifest: Manifest;
  report: PrepareReport;
}

/** Fixed-size row per candidate record, spilled in pass 1 and read back in pass 2. */
const ROW_BYTES = 24;
/** The report's padding/fill figures plan batches for at most this many train records. */
const BATCHING_SAMPLE = 100_000;
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
  const selection = new RecordSelection(opts.selection);
  const started = performance.now();
  const model =
    hooks.tokenizer ??
    (opts.model
      ? await loadModelTokenizer(opts.model, { ...(opts.template ? { template: opts.template } : {}), ...(opts.ollamaModelsDir ? { ollamaModelsDir: opts.ollamaModelsDir } : {}) })
      : undefined);
  if (!model) throw new Error('prepare needs --model (the model supplies the tokenizer and chat template)');
  const encoder = new ConversationEncoder(model.tokenizer, model.template);
  const mapping = opts.mapping ?? resolveFieldMapping();
  const chooser = formatChooser(opts.format, opts.formatByFile);
  const inputs = await resolveInputs(opts.inputs, mapping, (path) => chooser.choose(path), { exclude: [opts.outDir] });
  const unused = chooser.unused();
  if (unused.length > 0) throw new Error(`--format ${unused.map((o) => `${o.pattern}=${o.format}`).join(', ')}: matches no input file`);
  const totalBytes = inputs.reduce((n, f) => n + f.bytes, 0);

  prepareOutDir(opts.outDir);
  const tmp = join(opts.outDir, `.tmp-${process.pid}`);
  mkdirSync(tmp, { recursive: true });

  const report = emptyReport(opts.maxSeqLength);
  const rejections = new BufferedFileWriter(join(opts.outDir, 'rejections.jsonl'));
  const reject = (r: Rejection, kind: 'errors' | 'filtered'): void => {
    if (opts.strict && kind === 'errors') throw new StrictModeError(r);
    report[kind][r.reason] = (report[kind][r.reason] ?? 0) + 1;
    if (report.rejectionExamples.length < MAX_EXAMPLES) report.rejectionExamples.push(formatRejection(r));
    rejections.write(Buffer.from(`${JSON.stringify(r)}\n`));
  };

  const tokensOut = new BufferedFileWriter(join(tmp, 'all.tokens.i32'));
  const maskOut = new BufferedFileWriter(join(tmp, 'all.mask.u8'));
  const rowsOut = new BufferedFileWriter(join(tmp, 'rows.bin'));
  const spillOut = opts.emit.length > 0 ? new BufferedFileWriter(join(tmp, 'records.jsonl')) : undefined;
  const turns = new EventLoopTurns();
  const lsh = opts.dedupe && opts.nearDuplicateThreshold !== null ? lshParams(opts.nearDuplicateThreshold) : undefined;
  const dupes = opts.dedupe
    ? await DuplicateIndex.open(join(tmp, 'dedupe'), lsh ? { near: { signatureBytes: NUM_PERM, acceptAt: lsh.acceptAt } } : {}, turns)
    : undefined;
  if (lsh) report.duplicates.nearDetection = { threshold: opts.nearDuplicateThreshold!, acceptAt: lsh.acceptAt, bands: lsh.bands, rows: lsh.rows, permutations: NUM_PERM };
  const row = new DataView(new ArrayBuffer(ROW_BYTES));
  const qualityJoin = new QualityJoin();
  const sources: Manifest['sources'] = [];
  let candidates = 0;
  let bytesRead = 0;

  const filterOut = (record: DataRecord): RejectionReason | undefined => {
    if (opts.minQuality !== undefined) {
      // --keep-unscored exempts a record from the quality filter only, not from the others.
      if (record.quality === null && !opts.keepUnscored) return 'unscored';
      if (record.quality !== null && record.quality < opts.minQuality) return 'below-min-quality';
    }
    if (messageCount(record.body) < opts.minMessages) return 'too-few-messages';
    return undefined;
  };

  for (const [fileIndex, file] of inputs.entries()) {
    const sha = createHash('sha256');
    const onRawChunk = (chunk: Buffer) => {
      sha.update(chunk);
      bytesRead += chunk.length;
      hooks.onProgress?.({ bytesRead, totalBytes, records: candidates, file: file.path });
    };
    for await (const outcome of readInputRecords(file, { mapping, reasoning: opts.reasoning, onRawChunk, ...(opts.maxLineBytes ? { maxLineBytes: opts.maxLineBytes } : {}) })) {
      report.lines++;
      await turns.take();
      if (outcome.kind === 'blank') {
        report.blankLines++;
        continue;
      }
      if (outcome.kind === 'rejected' || outcome.kind === 'filtered') {
        reject(outcome.rejection, outcome.kind === 'rejected' ? 'errors' : 'filtered');
        continue;
      }
      if (outcome.kind === 'quality') {
        qualityJoin.add(outcome.update);
        continue;
      }
      const record = outcome.record;
      report.recordsByFormat[record.format] = (report.recordsByFormat[record.format] ?? 0) + 1;
      qualityJoin.apply(record);
      if (record.quality === null) report.quality.unscored++;
      else {
        report.quality.scored++;
        report.quality.histogram[qualityBin(record.quality)]!++;
      }
      const at = { file: record.source.file, line: record.source.line };
      const filtered = filterOut(record);
      if (filtered) {
        reject({ reason: filtered, ...at, message: filterMessage(filtered, record, opts.minQuality, opts.minMessages) }, 'filtered');
        continue;
      }
      if (await selection.leaveOut(record)) continue;

      let encoded: EncodedRecord;
      try {
        encoded = encoder.encode(record.body, opts.trainOn as TrainOn);
      } catch (e) {
        // One record's failure is that record's rejection: the run goes on (unless --strict).
        reject({ ...encodeFailure(e, model.template.name), ...at }, 'errors');
        continue;
      }
      let { ids, mask } = encoded;
      let truncated = false;
      if (ids.length > opts.maxSeqLength) {
        if (opts.overlong === 'drop') {
          report.length.dropped++;
          reject({ reason: 'too-long', ...at, message: `${ids.length} tokens > max_seq_length ${opts.maxSeqLength}` }, 'filtered');
          continue;
        }
        ids = ids.subarray(0, opts.maxSeqLength);
        mask = mask.subarray(0, opts.maxSeqLength);
        truncated = true;
      }
      let trained = 0;
      for (let i = 1; i < mask.length; i++) trained += mask[i]!;
      if (trained === 0) {
        if (truncated) {
          report.length.truncatedAway++;
          reject({ reason: 'truncated-away', ...at, message: `every trained token lies beyond max_seq_length ${opts.maxSeqLength} (${encoded.ids.length} tokens)` }, 'filtered');
        } else reject({ reason: 'no-trained-tokens', ...at, message: 'the template left no trained tokens' }, 'filtered');
        continue;
      }
      if (truncated) report.length.truncated++;

      const normalized = normalizedContent(record.body);
      const hash = hashNormalized(normalized);
      const split = assignSplit(hash.splitUnit, opts.split);
      let near = null;
      if (lsh) {
        const signature = minhashSignature(normalized);
        near = { bands: bandKeys(signature, lsh), signature: compactSignature(signature) };
      }
      dupes?.add(candidates, hash.exactHi, hash.exactLo, near);
      tokensOut.writeTyped(ids);
      maskOut.write(mask);
      row.setUint32(0, ids.length, true);
      row.setUint32(4, trained, true);
      row.setUint32(8, fileIndex, true);
      row.setUint32(12, record.source.line, true);
      row.setUint8(16, SPLITS.indexOf(split));
      row.setUint16(18, Math.min(messageCount(record.body), 0xffff), true);
      row.setFloat32(20, record.quality ?? Number.NaN, true);
      rowsOut.writeTyped(row);
      if (spillOut) spillOut.write(Buffer.from(`${spillRecord(record)}\n`));
      candidates++;
    }
    sources.push({ path: file.path, format: file.format, formatDetected: file.detected, bytes: file.bytes, sha256: sha.digest('hex') });
  }
  Object.assign(report.quality, qualityJoin.counts());
  tokensOut.close();
  maskOut.close();
  rowsOut.close();
  spillOut?.close();
  rejections.close();

  const dup = await dupes?.finish(turns);
  if (dup) Object.assign(report.duplicates, { nearCandidates: dup.nearCandidates, nearAccepted: dup.nearAccepted });
  const { splits, lengths, trainLengths } = await writeSurvivors({ opts, report, inputs, tmp, candidates, dup, spilled: spillOut !== undefined, turns });
  rmSync(tmp, { recursive: true, force: true });

  const tokenizerDir = writeTokenizerCopy(opts.outDir, model);
  const manifest: Manifest = {
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

  report.files = inputs.length;
  report.bytes = totalBytes;
  report.tokenLength = lengths.summary();
  for (const s of SPLITS) report.splits[s] = { records: splits[s].records, tokens: splits[s].tokens, trainedTokens: splits[s].trainedTokens };
  report.totals = reportTotals(report);
  report.batching = batchingFigures(trainLengths, opts.reportBatchSize, opts.maxSeqLength);
  report.elapsedSeconds = (performance.now() - started) / 1000;
  const parsed = Object.values(report.recordsByFormat).reduce((a, b) => a + b, 0);
  report.recordsPerSecond = parsed / report.elapsedSeconds;
  report.megabytesPerSecond = totalBytes / 1e6 / report.elapsedSeconds;

  writeFileSync(join(opts.outDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  await selection.finish(opts.outDir);
  writeFileSync(join(opts.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  return { manifest, report };
}

interface SurvivorPass {
  opts: PrepareOptions;
  report: PrepareReport;
  inputs: InputFile[];
  tmp: string;
  candidates: number;
  dup: DuplicateResult | undefined;
  /** Whether pass 1 spilled the records for --emit. */
  spilled: boolean;
  turns: EventLoopTurns;
}

/**
 * Pass 2: reads the spilled candidates back in order, counts the duplicates and copies every
 * survivor into its split's shards (and the --emit files), filling the report's histograms.
 */
async function writeSurvivors({ opts, report, inputs, tmp, candidates, dup, spilled, turns }: SurvivorPass) {
  const writers = Object.fromEntries(SPLITS.map((s) => [s, new SplitShardWriter(opts.outDir, s, opts.shardTokens)])) as Record<SplitName, SplitShardWriter>;
  const lengths = new LengthHistogram(opts.maxSeqLength);
  const trainLengths: number[] = [];
  const emitWriters = opts.emit.length > 0 ? openEmitWriters(opts.outDir, opts.emit) : undefined;
  const spillLines = spilled ? readJsonlLines(join(tmp, 'records.jsonl'))[Symbol.asyncIterator]() : undefined;
  const locate = locator(inputs, tmp);
  const tokensIn = new SequentialFileReader(join(tmp, 'all.tokens.i32'));
  const maskIn = new SequentialFileReader(join(tmp, 'all.mask.u8'));
  const rowsIn = new SequentialFileReader(join(tmp, 'rows.bin'));
  const row = new DataView(new ArrayBuffer(ROW_BYTES));
  const rowBytes = new Uint8Array(row.buffer);
  for (let i = 0; i < candidates; i++) {
    await turns.take();
    rowsIn.readInto(rowBytes);
    const length = row.getUint32(0, true);
    const spilledLine = spillLines ? await spillLines.next() : undefined;
    const status = dup?.status[i] ?? DUPLICATE_STATUS.unique;
    if (status !== DUPLICATE_STATUS.unique) {
      tokensIn.skip(length * 4);
      maskIn.skip(length);
      const kind = status === DUPLICATE_STATUS.exact ? 'exact' : 'near';
      report.duplicates[kind]++;
      if (report.duplicates.examples.length < MAX_EXAMPLES) report.duplicates.examples.push({ kind, removed: locate(i), kept: locate(dup!.keptAs[i]!) });
      continue;
    }
    const ids = new Int32Array(length);
    tokensIn.readInto(new Uint8Array(ids.buffer));
    const mask = new Uint8Array(length);
    maskIn.readInto(mask);
    const split = SPLITS[row.getUint8(16)]!;
    writers[split].append(ids, mask);
    lengths.add(length);
    if (split === 'train' && trainLengths.length < BATCHING_SAMPLE) trainLengths.push(length);
    const turnCount = String(row.getUint16(18, true));
    report.turnsPerConversation[turnCount] = (report.turnsPerConversation[turnCount] ?? 0) + 1;
    if (emitWriters && spilledLine && !spilledLine.done && spilledLine.value.kind === 'line') emitOne(opts.emit, unspillRecord(spilledLine.value.text), split, emitWriters, report);
  }
  tokensIn.close();
  maskIn.close();
  rowsIn.close();
  locate.close();
  for (const w of emitWriters?.values() ?? []) w.close();
  const splits = Object.fromEntries(SPLITS.map((s) => [s, writers[s].finish()])) as Manifest['splits'];
  return { splits, lengths, trainLengths };
}

function emitOne(formats: EmitFormat[], { body, quality }: ReturnType<typeof unspillRecord>, split: SplitName, writers: Map<string, BufferedFileWriter>, report: PrepareReport): void {
  for (const f of formats) {
    const obj = emitRecord(body, f, quality);
    if (obj) {
      writers.get(`${split}.${f}`)!.write(Buffer.from(`${JSON.stringify(obj)}\n`));
      report.emitted[f] = (report.emitted[f] ?? 0) + 1;
      if (carriesExtraWeight(body, f)) report.emittedWithExtraWeight[f] = (report.emittedWithExtraWeight[f] ?? 0) + 1;
    } else report.notRepresentable[f] = (report.notRepresentable[f] ?? 0) + 1;
  }
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

function filterMessage(reason: RejectionReason, record: DataRecord, minQuality: number | undefined, minMessages: number): string {
  if (reason === 'unscored') return `no quality score (--min-quality ${minQuality}; --keep-unscored keeps these)`;
  if (reason === 'below-min-quality') return `quality ${record.quality} < ${minQuality}`;
  return `${messageCount(record.body)} messages < --min-messages ${minMessages}`;
}

/** The rejection for a record the encoder could not turn into ids and a mask. */
function encodeFailure(e: unknown, templateName: string): { reason: RejectionReason; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof TemplateSpanError || e instanceof TemplateRenderError) return { reason: 'template-error', message: `${templateName}: ${message}` };
  if (e instanceof OffsetAlignmentError) return { reason: 'tokenizer-error', message };
  return { reason: 'encode-error', message: `${e instanceof Error ? e.name : 'error'}: ${message}` };
}

function openEmitWriters(outDir: string, formats: EmitFormat[]): Map<string, BufferedFileWriter> {
  const dir = join(outDir, 'emit');
  mkdirSync(dir, { recursive: true });
  const writers = new Map<string, BufferedFileWriter>();
  for (const s of SPLITS) for (const f of formats) writers.set(`${s}.${f}`, new BufferedFileWriter(join(dir, `${s}.${f}.jsonl`)));
  return writers;
}

/** file:line of candidate i, read back from the spilled rows (only for the few report examples). */
function locator(inputs: InputFile[], tmp: string): ((i: number) => string) & { close(): void } {
  let reader: SequentialFileReader | undefined;
  const cell = new Uint8Array(ROW_BYTES);
  const view = new DataView(cell.buffer);
  const fn = (i: number): string => {
    reader?.close();
    reader = new SequentialFileReader(join(tmp, 'rows.bin'));
    reader.skip(i * ROW_BYTES);
    reader.readInto(cell);
    return `${inputs[view.getUint32(8, true)]?.path}:${view.getUint32(12, true)}`;
  };
  return Object.assign(fn, { close: () => reader?.close() });
}

function writeTokenizerCopy(outDir: string, model: ModelTokenizer): string {
  const dir = join(outDir, 'tokenizer');
  mkdirSync(dir, { recursive: true });
  const { tokenizer, config } = model.tokenizer.spec;
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  // The template actually used goes into the copy's config, so reloading it renders identically.
  writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify({ ...config, chat_template: model.template.source }, null, 2)}\n`);
  return 'tokenizer';
}

function batchingFigures(trainLengths: number[], batchSize: number, maxSeqLength: number): PrepareReport['batching'] {
  const lengths = Uint32Array.from(trainLengths);
  const base = { batchSize, maxSeqLength: maxSeqLength - 1 };
  const bucket = planStats(planEpoch(lengths, batchPlanOptionsSchema.parse({ ...base, mode: 'bucket' }), 0), lengths, batchPlanOptionsSchema.parse({ ...base, mode: 'bucket' }));
  const packOpts = batchPlanOptionsSchema.parse({ ...base, mode: 'pack' });
  const pack = planStats(planEpoch(lengths, packOpts, 0), lengths, packOpts);
  return { batchSize, maxSeqLength: base.maxSeqLength, bucketPaddingFraction: bucket.paddingFraction, packFillRatio: pack.fillRatio, packPaddingFraction: pack.paddingFraction };
}
