/**
 * prepare's second pass: the spilled candidates read back in order, duplicates counted, and every
 * survivor copied into its split's shards (and the --emit files), filling the report's histograms.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BufferedFileWriter, SequentialFileReader } from './buffered-file.js';
import { CANDIDATE_ROW_BYTES, CandidateRowCodec } from './candidate-row.js';
import { DUPLICATE_STATUS, type DuplicateResult } from './duplicate-index.js';
import { carriesExtraWeight, emitRecord, unspillRecord, type EmitFormat } from './emit.js';
import type { EventLoopTurns } from './event-loop-turn.js';
import type { InputFile } from './inputs.js';
import { readJsonlLines } from './jsonl-reader.js';
import type { Manifest } from './manifest.js';
import type { PrepareOptions } from './prepare-options.js';
import { LengthHistogram, MAX_EXAMPLES, type PrepareReport } from './report.js';
import { SplitShardWriter } from './shard-writer.js';
import { SPLITS, type SplitName } from './split.js';

/** The report's padding/fill figures plan batches for at most this many train records. */
const BATCHING_SAMPLE = 100_000;

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
export async function writeSurvivors({ opts, report, inputs, tmp, candidates, dup, spilled, turns }: SurvivorPass) {
  const writers = Object.fromEntries(SPLITS.map((s) => [s, new SplitShardWriter(opts.outDir, s, opts.shardTokens)])) as Record<SplitName, SplitShardWriter>;
  const lengths = new LengthHistogram(opts.maxSeqLength);
  const trainLengths: number[] = [];
  const emitWriters = opts.emit.length > 0 ? openEmitWriters(opts.outDir, opts.emit) : undefined;
  const spillLines = spilled ? readJsonlLines(join(tmp, 'records.jsonl'))[Symbol.asyncIterator]() : undefined;
  const locate = locator(inputs, tmp);
  const tokensIn = new SequentialFileReader(join(tmp, 'all.tokens.i32'));
  const maskIn = new SequentialFileReader(join(tmp, 'all.mask.u8'));
  const rowsIn = new SequentialFileReader(join(tmp, 'rows.bin'));
  const codec = new CandidateRowCodec();
  for (let i = 0; i < candidates; i++) {
    await turns.take();
    rowsIn.readInto(codec.bytes);
    const row = codec.decode();
    const { length } = row;
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
    const { split } = row;
    writers[split].append(ids, mask);
    lengths.add(length);
    if (split === 'train' && trainLengths.length < BATCHING_SAMPLE) trainLengths.push(length);
    const turnCount = String(row.turns);
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
  const codec = new CandidateRowCodec();
  const fn = (i: number): string => {
    reader?.close();
    reader = new SequentialFileReader(join(tmp, 'rows.bin'));
    reader.skip(i * CANDIDATE_ROW_BYTES);
    reader.readInto(codec.bytes);
    const row = codec.decode();
    return `${inputs[row.fileIndex]?.path}:${row.line}`;
  };
  return Object.assign(fn, { close: () => reader?.close() });
}
