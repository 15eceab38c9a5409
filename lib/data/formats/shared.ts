/**
 * Pieces every format parser shares: the zod building blocks records are validated with, the
 * zod issue → RecordError translation, and the quality / conversation-id lookups.
 *
 * A zod issue carries its rejection reason in `params.reason` (`schema` when it has none), so the
 * report groups lines by what is wrong with them (`empty-content`, `unknown-role`, ...), not just
 * "invalid". Messages read as `messages[1].content: expected a string` or `messages is empty`.
 */
import { z } from 'zod';
import { RecordError, type RejectionReason } from '../errors.js';
import type { FieldMapping } from '../field-mapping.js';
import { canonicalRole } from '../field-mapping.js';
import type { ChatMessage } from '../record.js';

export type JsonObject = Record<string, unknown>;

/** A zod issue standing for `reason`; `continue: false` stops later checks on the same value. */
export function reasonIssue(reason: RejectionReason, message: string, input: unknown): z.core.$ZodRawIssue {
  return { code: 'custom', message, input, params: { reason }, continue: false };
}

function formatPath(prefix: string | undefined, path: readonly PropertyKey[]): string {
  let out = prefix ?? '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out || '(record)';
}

/** Parses `raw` with `schema`, or throws a RecordError for its first issue; `at` prefixes paths. */
export function parseWith<T>(schema: z.ZodType<T>, raw: unknown, at?: string): T {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const params = issue && 'params' in issue ? (issue.params as { reason?: RejectionReason } | undefined) : undefined;
  const path = formatPath(at, issue?.path ?? []);
  const message = issue?.message ?? 'invalid';
  // Predicates ("is empty", "has no assistant turn") read as a sentence after the field name.
  throw new RecordError(params?.reason ?? 'schema', /^(is|has) /.test(message) ? `${path} ${message}` : `${path}: ${message}`);
}

const missingOr = (expected: string) => (iss: { input: unknown }) => (iss.input === undefined ? 'required field is missing' : expected);

/** A string field, required. */
export const requiredString = z.string({ error: missingOr('expected a string') });

/** A required string, trimmed, that must not be empty. */
export const nonEmptyText = requiredString.transform((s, ctx) => {
  const trimmed = s.trim();
  if (trimmed === '') ctx.issues.push(reasonIssue('empty-content', 'is empty', s));
  return trimmed;
});

/** An optional string field ('' when absent or null), trimmed. */
export const optionalText = z
  .string({ error: 'expected a string' })
  .nullish()
  .transform((s) => (s ?? '').trim());

/** The field holding the answer: missing means there is nothing to train on. */
export const answerText = z
  .custom<unknown>((v) => v !== undefined, { error: 'required field is missing', params: { reason: 'no-assistant-turn' } })
  .pipe(nonEmptyText);

/** Any JSON object. */
export const objectSchema = z.record(z.string(), z.unknown(), { error: missingOr('expected an object') });

const weightSchema = z.unknown().optional().transform((w, ctx): 0 | 1 | undefined => {
  if (w === undefined || w === null) return undefined;
  if (w !== 0 && w !== 1) {
    ctx.issues.push(reasonIssue('bad-weight', `expected 0 or 1, got ${JSON.stringify(w)}`, w));
    return undefined;
  }
  return w;
});

/** `build` run once per field mapping: schemas name their fields after the mapping. */
export function perMapping<T>(build: (mapping: FieldMapping) => T): (mapping: FieldMapping) => T {
  const cache = new WeakMap<FieldMapping, T>();
  return (mapping) => {
    let value = cache.get(mapping);
    if (value === undefined) cache.set(mapping, (value = build(mapping)));
    return value;
  };
}

const listSchemas = perMapping(() => new Map<string, z.ZodType<ChatMessage[]>>());

/**
 * A list of {role, content, weight?} objects (field names from the mapping): role aliases mapped,
 * contents trimmed; a non-empty list, known roles, non-empty contents, weight 0/1, and at least one
 * trained assistant turn.
 */
export function messageListSchema(mapping: FieldMapping, roleField: string, contentField: string): z.ZodType<ChatMessage[]> {
  const byFields = listSchemas(mapping);
  const key = `${roleField}\u0000${contentField}`;
  const cached = byFields.get(key);
  if (cached) return cached;

  const role = requiredString.transform((name, ctx) => {
    const canonical = canonicalRole(name, mapping);
    if (!canonical) ctx.issues.push(reasonIssue('unknown-role', `unknown role "${name}"`, name));
    return canonical ?? 'user';
  });
  const message = z
    .object({ [roleField]: role, [contentField]: nonEmptyText, [mapping.weight]: weightSchema }, { error: 'expected an object' })
    .transform((m): ChatMessage => {
      const out: ChatMessage = { role: m[roleField] as ChatMessage['role'], content: m[contentField] as string };
      const weight = m[mapping.weight] as 0 | 1 | undefined;
      if (weight !== undefined) out.weight = weight;
      return out;
    });
  const schema = z
    .array(message, { error: missingOr('expected an array') })
    .check((ctx) => {
      if (ctx.value.length === 0) ctx.issues.push(reasonIssue('empty-messages', 'is empty', ctx.value));
    })
    .check((ctx) => {
      if (!ctx.value.some((m) => m.role === 'assistant' && m.weight !== 0)) {
        ctx.issues.push(reasonIssue('no-assistant-turn', 'has no assistant turn to train on', ctx.value));
      }
    });
  byFields.set(key, schema);
  return schema;
}

function lookup(obj: JsonObject, key: string, mapping: FieldMapping): unknown {
  const meta = obj[mapping.metadata];
  if (meta !== null && typeof meta === 'object' && !Array.isArray(meta) && key in meta) return (meta as JsonObject)[key];
  return obj[key];
}

const qualityMessage = (iss: { input: unknown }) => `expected a number in [0, 1] or null, got ${JSON.stringify(iss.input)}`;
const qualitySchema = z
  .number({ error: qualityMessage })
  .min(0, { error: qualityMessage })
  .max(1, { error: qualityMessage })
  .nullish()
  .transform((q) => q ?? null);

/** A quality score in [0, 1], or null when absent/null (metadata first, then the top level). */
export function qualityOf(obj: JsonObject, mapping: FieldMapping, key = mapping.qualityScore): number | null {
  return parseWith(qualitySchema, lookup(obj, key, mapping), key);
}

// Ids only join quality metrics: anything that is not a usable id just does not join.
const conversationIdSchema = z
  .union([z.string().min(1), z.number().transform(String)])
  .optional()
  .catch(undefined);

export function conversationIdOf(obj: JsonObject, mapping: FieldMapping): string | undefined {
  return conversationIdSchema.parse(lookup(obj, mapping.conversationId, mapping));
}
