/**
 * prepare's first pass: every input line → a record, joined with its quality score, filtered,
 * selected (--since/--where), encoded (ids + loss mask), fitted to max_seq_length, hashed for
 * dedupe and the split, and spilled to the temp folder as tokens, mask and a candidate row.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ConversationEncoder, EncodedRecord, TrainOn } from '../tokenizer/conversation-encoder.js';
import { TemplateRenderError } from '../tokenizer/chat-template.js';
import { OffsetAlignmentError } from '../tokenizer/offsets.js';
import { TemplateSpanError } from '../tokenizer/span-render.js';
import { BufferedFileWriter } from './buffered-file.js';
import { CandidateRowCodec } from './candidate-row.js';
import { hashNormalized, normalizedContent } from './content-hash.js';
import type { DuplicateIndex } from './duplicate-index.js';
import { spillRecord } from './emit.js';
import type { EventLoopTurns } from './event-loop-turn.js';
import type { Rejection, RejectionReason } from './errors.js';
import type { FieldMapping } from './field-mapping.js';
import type { InputFile } from './inputs.js';
import type { Manifest } from './manifest.js';
import { bandKeys, compactSignature, minhashSignature, type LshParams } from './minhash.js';
import type { PrepareHooks, PrepareOptions } from './prepare-options.js';
import { QualityJoin } from './quality-join.js';
import { messageCount, type DataRecord } from './record.js';
import { readInputRecords } from './record-reader.js';
import { qualityBin, type PrepareReport } from './report.js';
import type { RecordSelection } from './since-filter.js';
import { assignSplit } from './split.js';

/** Where pass one writes: the temp folder's token, mask and row files (and records for --emit). */
export class CandidateSpill {
  readonly tokens: BufferedFileWriter;
  readonly mask: BufferedFileWriter;
  readonly rows: BufferedFileWriter;
  readonly records: BufferedFileWriter | undefined;
  readonly codec = new CandidateRowCodec();
  count = 0;

  constructor(tmp: string, emit: boolean) {
    this.tokens = new BufferedFileWriter(join(tmp, 'all.tokens.i32'));
    this.mask = new BufferedFileWriter(join(tmp, 'all.mask.u8'));
    this.rows = new BufferedFileWriter(join(tmp, 'rows.bin'));
    this.records = emit ? new BufferedFileWriter(join(tmp, 'records.jsonl')) : undefined;
  }

  close(): void {
    this.tokens.close();
    this.mask.close();
    this.rows.close();
    this.records?.close();
  }
}

export interface PassOneContext {
  readonly opts: PrepareOptions;
  readonly report: PrepareReport;
  readonly encoder: ConversationEncoder;
  readonly templateName: string;
  readonly mapping: FieldMapping;
  readonly selection: RecordSelection;
  readonly turns: EventLoopTurns;
  readonly lsh: LshParams | undefined;
  readonly dupes: DuplicateIndex | undefined;
  readonly spill: CandidateSpill;
  readonly qualityJoin: QualityJoin;
  reject(r: Rejection, kind: 'errors' | 'filtered'): void;
}

/** Reads every input; returns the manifest's source list. */
export async function readCandidates(ctx: PassOneContext, inputs: readonly InputFile[], hooks: PrepareHooks): Promise<Manifest['sources']> {
  const { opts, report } = ctx;
  const totalBytes = inputs.reduce((n, f) => n + f.bytes, 0);
  const sources: Manifest['sources'] = [];
  let bytesRead = 0;
  for (const [fileIndex, file] of inputs.entries()) {
    const sha = createHash('sha256');
    const onRawChunk = (chunk: Buffer) => {
      sha.update(chunk);
      bytesRead += chunk.length;
      hooks.onProgress?.({ bytesRead, totalBytes, records: ctx.spill.count, file: file.path });
    };
    for await (const outcome of readInputRecords(file, { mapping: ctx.mapping, reasoning: opts.reasoning, onRawChunk, ...(opts.maxLineBytes ? { maxLineBytes: opts.maxLineBytes } : {}) })) {
      report.lines++;
      await ctx.turns.take();
      if (outcome.kind === 'blank') report.blankLines++;
      else if (outcome.kind === 'rejected' || outcome.kind === 'filtered') ctx.reject(outcome.rejection, outcome.kind === 'rejected' ? 'errors' : 'filtered');
      else if (outcome.kind === 'quality') ctx.qualityJoin.add(outcome.update);
      else await takeRecord(ctx, outcome.record, fileIndex);
    }
    sources.push({ path: file.path, format: file.format, formatDetected: file.detected, bytes: file.bytes, sha256: sha.digest('hex') });
  }
  Object.assign(report.quality, ctx.qualityJoin.counts());
  return sources;
}

/** One parsed record: counted, filtered, selected, encoded, fitted, spilled (or rejected with its reason). */
async function takeRecord(ctx: PassOneContext, record: DataRecord, fileIndex: number): Promise<void> {
  const { opts, report } = ctx;
  report.recordsByFormat[record.format] = (report.recordsByFormat[record.format] ?? 0) + 1;
  ctx.qualityJoin.apply(record);
  if (record.quality === null) report.quality.unscored++;
  else {
    report.quality.scored++;
    report.quality.histogram[qualityBin(record.quality)]!++;
  }
  const at = { file: record.source.file, line: record.source.line };
  const filtered = filterOut(record, opts);
  if (filtered) return ctx.reject({ reason: filtered, ...at, message: filterMessage(filtered, record, opts.minQuality, opts.minMessages) }, 'filtered');
  if (await ctx.selection.leaveOut(record)) return;
  let encoded: EncodedRecord;
  try {
    encoded = ctx.encoder.encode(record.body, opts.trainOn as TrainOn);
  } catch (e) {
    // One record's failure is that record's rejection: the run goes on (unless --strict).
    return ctx.reject({ ...encodeFailure(e, ctx.templateName), ...at }, 'errors');
  }
  const fitted = fitToLength(ctx, encoded, at);
  if (fitted) spillCandidate(ctx, record, fitted, fileIndex);
}

function filterOut(record: DataRecord, opts: PrepareOptions): RejectionReason | undefined {
  if (opts.minQuality !== undefined) {
    // --keep-unscored exempts a record from the quality filter only, not from the others.
    if (record.quality === null && !opts.keepUnscored) return 'unscored';
    if (record.quality !== null && record.quality < opts.minQuality) return 'below-min-quality';
  }
  if (messageCount(record.body) < opts.minMessages) return 'too-few-messages';
  return undefined;
}

interface FittedRecord {
  ids: Int32Array;
  mask: Uint8Array;
  trained: number;
}

/** The record cut or dropped by --overlong; undefined (and a rejection) when nothing trainable is left. */
function fitToLength(ctx: PassOneContext, encoded: EncodedRecord, at: { file: string; line: number }): FittedRecord | undefined {
  const { opts, report } = ctx;
  let { ids, mask } = encoded;
  let truncated = false;
  if (ids.length > opts.maxSeqLength) {
    if (opts.overlong === 'drop') {
      report.length.dropped++;
      ctx.reject({ reason: 'too-long', ...at, message: `${ids.length} tokens > max_seq_length ${opts.maxSeqLength}` }, 'filtered');
      return undefined;
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
      ctx.reject({ reason: 'truncated-away', ...at, message: `every trained token lies beyond max_seq_length ${opts.maxSeqLength} (${encoded.ids.length} tokens)` }, 'filtered');
    } else ctx.reject({ reason: 'no-trained-tokens', ...at, message: 'the template left no trained tokens' }, 'filtered');
    return undefined;
  }
  if (truncated) report.length.truncated++;
  return { ids, mask, trained };
}

/** Hashes the record for dedupe and its split, and writes its tokens, mask and row. */
function spillCandidate(ctx: PassOneContext, record: DataRecord, { ids, mask, trained }: FittedRecord, fileIndex: number): void {
  const { spill } = ctx;
  const normalized = normalizedContent(record.body);
  const hash = hashNormalized(normalized);
  const split = assignSplit(hash.splitUnit, ctx.opts.split);
  let near = null;
  if (ctx.lsh) {
    const signature = minhashSignature(normalized);
    near = { bands: bandKeys(signature, ctx.lsh), signature: compactSignature(signature) };
  }
  ctx.dupes?.add(spill.count, hash.exactHi, hash.exactLo, near);
  spill.tokens.writeTyped(ids);
  spill.mask.write(mask);
  spill.rows.write(spill.codec.encode({ length: ids.length, trained, fileIndex, line: record.source.line, split, turns: messageCount(record.body), quality: record.quality ?? Number.NaN }));
  if (spill.records) spill.records.write(Buffer.from(`${spillRecord(record)}\n`));
  spill.count++;
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
