/**
 * `--emit chatml|alpaca|sharegpt`: the cleaned records (after filters and dedupe) in formats other
 * trainers read. Plain-text records are written as `{"text": ...}` in every format. Alpaca holds one
 * exchange only, so multi-turn conversations are counted as not representable rather than cut.
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
  if (format === 'sharegpt') return { conversations: messages.map((m) => ({ from: SHAREGPT_FROM[m.role], value: m.content })), ...extra };
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

/** What phase 1 spills to disk so phase 2 can emit the records that survive dedupe. */
export function spillRecord(record: DataRecord): string {
  return JSON.stringify({ body: record.body, quality: record.quality });
}

export function unspillRecord(line: string): { body: RecordBody; quality: number | null } {
  return JSON.parse(line) as { body: RecordBody; quality: number | null };
}
