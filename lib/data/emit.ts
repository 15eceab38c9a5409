/**
 * `--emit chatml|alpaca|sharegpt`: the cleaned records (after filters and dedupe) in formats other
 * trainers read. Plain-text records are written as `{"text": ...}` in every format. Alpaca holds one
 * exchange only, so multi-turn conversations are counted as not representable rather than cut.
 * ShareGPT has no per-turn weight: a weight-0 turn keeps `"weight": 0` as an extra key (our reader
 * and some trainers honour it, others ignore it), and the report counts such records.
 */
import type { DataRecord, RecordBody } from './record.js';

export const EMIT_FORMATS = ['chatml', 'alpaca', 'sharegpt'] as const;
export type EmitFormat = (typeof EMIT_FORMATS)[number];

const SHAREGPT_FROM = { system: 'system', user: 'human', assistant: 'gpt', tool: 'tool' } as const;

/** The emitted JSON object, or undefined when the format cannot hold the record. */
export function emitRecord(body: RecordBody, format: EmitFormat, quality: number | null): Record<string, unknown> | undefined {
  const extra = quality === null ? {} : { quality_score: quality };
  if (body.kind === 'text') return { text: body.text, ...extra };
  const messages = body.messages;
  if (format === 'chatml') return { messages: messages.map((m) => (m.weight === 0 ? { ...m } : { role: m.role, content: m.content })), ...extra };
  if (format === 'sharegpt') {
    return { conversations: messages.map((m) => ({ from: SHAREGPT_FROM[m.role], value: m.content, ...(m.weight === 0 ? { weight: 0 } : {}) })), ...extra };
  }
  const system = messages.filter((m) => m.role === 'system');
  const rest = messages.filter((m) => m.role !== 'system');
  if (system.length > 1 || rest.length !== 2 || rest[0]!.role !== 'user' || rest[1]!.role !== 'assistant') return undefined;
  return {
    instruction: rest[0]!.content,
    input: '',
    output: rest[1]!.content,
    ...(system[0] ? { system: system[0].content } : {}),
    ...extra,
  };
}

/** True when emitting the record in `format` relies on a key that format does not define. */
export function carriesExtraWeight(body: RecordBody, format: EmitFormat): boolean {
  return format === 'sharegpt' && body.kind === 'chat' && body.messages.some((m) => m.weight === 0);
}

/** What phase 1 spills to disk so phase 2 can emit the records that survive dedupe. */
export function spillRecord(record: DataRecord): string {
  return JSON.stringify({ body: record.body, quality: record.quality });
}

export function unspillRecord(line: string): { body: RecordBody; quality: number | null } {
  return JSON.parse(line) as { body: RecordBody; quality: number | null };
}
