/**
 * zod schemas for the Hugging Face tokenizer files we read: only the fields we interpret are typed,
 * the rest passes through to @huggingface/tokenizers untouched.
 */
import { z } from 'zod';

const addedTokenSchema = z.looseObject({
  id: z.number().int().nonnegative(),
  content: z.string(),
  special: z.boolean().default(false),
  lstrip: z.boolean().optional(),
  rstrip: z.boolean().optional(),
  normalized: z.boolean().optional(),
  single_word: z.boolean().optional(),
});
export type AddedTokenJson = z.infer<typeof addedTokenSchema>;

const componentSchema = z.looseObject({ type: z.string() });
export type ComponentJson = z.infer<typeof componentSchema>;

export const tokenizerJsonSchema = z.looseObject({
  added_tokens: z.array(addedTokenSchema).default([]),
  normalizer: componentSchema.nullable().default(null),
  pre_tokenizer: componentSchema.nullable().default(null),
  post_processor: componentSchema.nullable().default(null),
  decoder: componentSchema.nullable().default(null),
  model: z.looseObject({
    type: z.string().optional(),
    vocab: z.union([z.record(z.string(), z.number().int()), z.array(z.tuple([z.string(), z.number()]))]),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])).optional(),
    byte_fallback: z.boolean().optional(),
    unk_token: z.string().nullable().optional(),
  }),
});
export type TokenizerJson = z.infer<typeof tokenizerJsonSchema>;

/** `bos_token` and friends are strings or AddedToken-shaped objects in tokenizer_config.json. */
const tokenRefSchema = z
  .union([z.string(), z.looseObject({ content: z.string() }), z.null()])
  .optional()
  .transform((v) => (v === null || v === undefined ? undefined : typeof v === 'string' ? v : v.content));

export const tokenizerConfigSchema = z.looseObject({
  bos_token: tokenRefSchema,
  eos_token: tokenRefSchema,
  pad_token: tokenRefSchema,
  unk_token: tokenRefSchema,
  add_bos_token: z.boolean().optional(),
  add_eos_token: z.boolean().optional(),
  chat_template: z
    .union([z.string(), z.array(z.object({ name: z.string(), template: z.string() }))])
    .nullable()
    .optional(),
});
export type TokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

export function parseTokenizerJson(raw: unknown, where: string): TokenizerJson {
  const r = tokenizerJsonSchema.safeParse(raw);
  if (!r.success) throw new Error(`${where}: not a tokenizer.json: ${describeIssue(r.error)}`);
  return r.data;
}

export function parseTokenizerConfig(raw: unknown, where: string): TokenizerConfig {
  const r = tokenizerConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(`${where}: invalid tokenizer_config.json: ${describeIssue(r.error)}`);
  return r.data;
}

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid';
}

/** The default template of a config whose `chat_template` may be a list of named templates. */
export function configChatTemplate(config: TokenizerConfig): string | undefined {
  const t = config.chat_template;
  if (!t) return undefined;
  if (typeof t === 'string') return t;
  return (t.find((x) => x.name === 'default') ?? t[0])?.template;
}
