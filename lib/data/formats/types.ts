import type { RejectionReason } from '../errors.js';
import type { FieldMapping } from '../field-mapping.js';
import type { RecordBody } from '../record.js';
import type { JsonObject } from './shared.js';

/**
 * What one JSONL line turns into: a training record, a quality score for another record, or a
 * valid line that is not a training example (a failed agent generation), left out with a reason.
 */
export type ParsedLine =
  | { kind: 'record'; body: RecordBody; quality: number | null; conversationId?: string }
  | { kind: 'quality'; conversationId: string; quality: number | null }
  | { kind: 'filtered'; reason: RejectionReason; message: string };

export interface FormatOptions {
  mapping: FieldMapping;
  /** ICEBURG reasoning chains: leave the chain out, or write it into the assistant turn before the answer. */
  reasoning: 'omit' | 'inline';
}

export interface FormatParser {
  /** True when the object has this format's distinguishing fields (used for detection). */
  matches(obj: JsonObject, mapping: FieldMapping): boolean;
  /** Converts a line; throws RecordError with a reason for anything invalid. */
  parse(obj: JsonObject, options: FormatOptions): ParsedLine;
}
