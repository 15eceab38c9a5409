/**
 * Pieces every format parser shares: zod issue → RecordError, message-list validation, and the
 * quality / conversation-id lookups.
 */
import { z } from 'zod';
import { RecordError } from '../errors.js';
import type { FieldMapping } from '../field-mapping.js';
import { canonicalRole } from '../field-mapping.js';
import type { ChatMessage } from '../record.js';

export type JsonObject = Record<string, unknown>;

export function parseWith<T>(schema: z.ZodType<T>, raw: unknown): T {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue && issue.path.length > 0 ? issue.path.join('.') : '(record)';
  throw new RecordError('schema', `${path}: ${issue?.message ?? 'invalid'}`);
}

const rawMessageSchema = z.record(z.string(), z.unknown());

/**
 * Validates a list of {role, content, weight?} objects (field names from the mapping), maps role
 * aliases, trims contents and enforces: non-empty list, known roles, non-empty contents, weight 0/1,
 * and at least one trained assistant turn.
 */
export function toChatMessages(
  raw: unknown,
  listName: string,
  mapping: FieldMapping,
  roleField: string,
  contentField: string,
): ChatMessage[] {
  if (!Array.isArray(raw)) throw new RecordError('schema', `${listName}: expected an array`);
  if (raw.length === 0) throw new RecordError('empty-messages', `${listName} is empty`);
  const messages: ChatMessage[] = [];
  raw.forEach((item, i) => {
    const where = `${listName}[${i}]`;
    const obj = rawMessageSchema.safeParse(item);
    if (!obj.success) throw new RecordError('schema', `${where}: expected an object`);
    const roleName = obj.data[roleField];
    if (typeof roleName !== 'string') throw new RecordError('schema', `${where}.${roleField}: expected a string`);
    const role = canonicalRole(roleName, mapping);
    if (!role) throw new RecordError('unknown-role', `${where}.${roleField}: unknown role "${roleName}"`);
    const content = obj.data[contentField];
    if (typeof content !== 'string') throw new RecordError('schema', `${where}.${contentField}: expected a string`);
    const trimmed = content.trim();
    if (trimmed === '') throw new RecordError('empty-content', `${where}.${contentField} is empty`);
    const message: ChatMessage = { role, content: trimmed };
    const weight = obj.data[mapping.weight];
    if (weight !== undefined && weight !== null) {
      if (weight !== 0 && weight !== 1) throw new RecordError('bad-weight', `${where}.${mapping.weight}: expected 0 or 1, got ${JSON.stringify(weight)}`);
      message.weight = weight;
    }
    messages.push(message);
  });
  requireTrainedAssistant(messages, listName);
  return messages;
}

export function requireTrainedAssistant(messages: ChatMessage[], listName: string): void {
  if (!messages.some((m) => m.role === 'assistant' && m.weight !== 0)) {
    throw new RecordError('no-assistant-turn', `${listName} has no assistant turn to train on`);
  }
}

export function nonEmpty(raw: unknown, field: string): string {
  if (typeof raw !== 'string') throw new RecordError('schema', `${field}: expected a string`);
  const trimmed = raw.trim();
  if (trimmed === '') throw new RecordError('empty-content', `${field} is empty`);
  return trimmed;
}

function lookup(obj: JsonObject, key: string, mapping: FieldMapping): unknown {
  const meta = obj[mapping.metadata];
  if (meta !== null && typeof meta === 'object' && !Array.isArray(meta) && key in meta) return (meta as JsonObject)[key];
  return obj[key];
}

/** A quality score in [0, 1], or null when absent/null. Anything else is a schema error. */
export function qualityOf(obj: JsonObject, mapping: FieldMapping, key = mapping.qualityScore): number | null {
  const q = lookup(obj, key, mapping);
  if (q === undefined || q === null) return null;
  if (typeof q !== 'number' || !Number.isFinite(q) || q < 0 || q > 1) {
    throw new RecordError('schema', `${key}: expected a number in [0, 1] or null, got ${JSON.stringify(q)}`);
  }
  return q;
}

export function conversationIdOf(obj: JsonObject, mapping: FieldMapping): string | undefined {
  const id = lookup(obj, mapping.conversationId, mapping);
  if (typeof id === 'string' && id !== '') return id;
  if (typeof id === 'number') return String(id);
  return undefined;
}

export function missing(field: string): RecordError {
  return new RecordError('schema', `${field}: required field is missing`);
}
