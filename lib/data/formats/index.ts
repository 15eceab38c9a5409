/** The format registry and per-file detection. */
import type { FieldMapping } from '../field-mapping.js';
import type { RecordFormat } from '../record.js';
import { alpacaFormat } from './alpaca.js';
import { chatmlFormat } from './chatml.js';
import { completionFormat, textFormat } from './completion.js';
import { iceburgAgentFormat, iceburgConversationsFormat, iceburgQualityFormat, iceburgReasoningFormat } from './iceburg.js';
import { sharegptFormat } from './sharegpt.js';
import type { JsonObject } from './shared.js';
import type { FormatParser } from './types.js';

export type { FormatOptions, FormatParser, ParsedLine } from './types.js';

export const FORMAT_PARSERS: Record<RecordFormat, FormatParser> = {
  chatml: chatmlFormat,
  alpaca: alpacaFormat,
  sharegpt: sharegptFormat,
  completion: completionFormat,
  text: textFormat,
  'iceburg-conversations': iceburgConversationsFormat,
  'iceburg-reasoning': iceburgReasoningFormat,
  'iceburg-quality': iceburgQualityFormat,
  'iceburg-agent': iceburgAgentFormat,
};

/** Most specific first: an ICEBURG conversation is also a ChatML record, so it is tried before. */
const DETECTION_ORDER: RecordFormat[] = [
  'iceburg-reasoning',
  'iceburg-quality',
  'iceburg-agent',
  'iceburg-conversations',
  'chatml',
  'sharegpt',
  'alpaca',
  'completion',
  'text',
];

export function detectLineFormat(obj: JsonObject, mapping: FieldMapping): RecordFormat | undefined {
  return DETECTION_ORDER.find((f) => FORMAT_PARSERS[f].matches(obj, mapping));
}

/** The format most of the sampled objects match (ties go to the more specific format). */
export function detectFileFormat(sample: JsonObject[], mapping: FieldMapping): RecordFormat | undefined {
  const votes = new Map<RecordFormat, number>();
  for (const obj of sample) {
    const f = detectLineFormat(obj, mapping);
    if (f) votes.set(f, (votes.get(f) ?? 0) + 1);
  }
  let best: RecordFormat | undefined;
  for (const f of DETECTION_ORDER) if ((votes.get(f) ?? 0) > (best ? (votes.get(best) ?? 0) : 0)) best = f;
  return best;
}
