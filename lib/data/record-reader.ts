/** One input file → parsed records, quality updates and rejections, each with its line number. */
import { RecordError, type Rejection } from './errors.js';
import { FORMAT_PARSERS, type FormatOptions } from './formats/index.js';
import type { InputFile } from './inputs.js';
import { readJsonlLines } from './jsonl-reader.js';
import type { DataRecord, QualityUpdate } from './record.js';

/**
 * `rejected`: the line is broken or invalid (an error, which --strict stops at); `filtered`: the
 * line is valid but not a training example (a failed agent generation), left out with its reason.
 */
export type LineOutcome =
  | { kind: 'record'; record: DataRecord }
  | { kind: 'quality'; update: QualityUpdate }
  | { kind: 'rejected'; rejection: Rejection }
  | { kind: 'filtered'; rejection: Rejection }
  | { kind: 'blank' };

export interface RecordReadOptions extends FormatOptions {
  maxLineBytes?: number;
  onRawChunk?: (chunk: Buffer) => void;
}

export async function* readInputRecords(file: InputFile, options: RecordReadOptions): AsyncGenerator<LineOutcome> {
  const parser = FORMAT_PARSERS[file.format];
  const reject = (line: number, reason: Rejection['reason'], message: string): LineOutcome => ({
    kind: 'rejected',
    rejection: { reason, file: file.path, line, message },
  });
  for await (const item of readJsonlLines(file.path, {
    ...(options.maxLineBytes !== undefined ? { maxLineBytes: options.maxLineBytes } : {}),
    ...(options.onRawChunk ? { onRawChunk: options.onRawChunk } : {}),
  })) {
    if (item.kind === 'blank') {
      yield { kind: 'blank' };
      continue;
    }
    if (item.kind === 'error') {
      yield reject(item.lineNumber, item.reason, item.message);
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(item.text);
    } catch (e) {
      yield reject(item.lineNumber, 'broken-json', e instanceof Error ? e.message : String(e));
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield reject(item.lineNumber, 'not-an-object', `expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`);
      continue;
    }
    try {
      const parsed = parser.parse(value as Record<string, unknown>, options);
      const source = { file: file.path, line: item.lineNumber };
      if (parsed.kind === 'quality') {
        yield { kind: 'quality', update: { conversationId: parsed.conversationId, quality: parsed.quality, source } };
      } else if (parsed.kind === 'filtered') {
        yield { kind: 'filtered', rejection: { reason: parsed.reason, file: file.path, line: item.lineNumber, message: `${file.format}: ${parsed.message}` } };
      } else {
        const record: DataRecord = { body: parsed.body, quality: parsed.quality, format: file.format, source };
        if (parsed.conversationId !== undefined) record.conversationId = parsed.conversationId;
        yield { kind: 'record', record };
      }
    } catch (e) {
      if (e instanceof RecordError) yield reject(item.lineNumber, e.reason, `${file.format}: ${e.message}`);
      else throw e;
    }
  }
}
