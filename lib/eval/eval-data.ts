/**
 * What an evaluation runs on: prompts with optional references and categories, from an eval JSONL
 * (`prompt` or `messages`, `reference`, `category`) or a prepared folder's test split, as token
 * ids: the prompt a model answers, and the prompt + reference sequence with its supervised mask.
 */
import { stat } from 'node:fs/promises';
import { z } from 'zod';
import { formatRejection, type Rejection } from '../data/errors.js';
import { readJsonlLines } from '../data/jsonl-reader.js';
import { PreparedDataset } from '../data/prepared-dataset.js';
import { ROLES, type ChatMessage } from '../tokenizer/conversation.js';
import { ConversationEncoder } from '../tokenizer/conversation-encoder.js';
import type { ChatTemplate } from '../tokenizer/chat-template.js';
import type { TextTokenizer } from '../tokenizer/text-tokenizer.js';

export const DEFAULT_CATEGORY = 'default';

/** One eval line before tokenization. */
export interface EvalPrompt {
  /** `file:line`. */
  readonly id: string;
  readonly category: string;
  /** The conversation up to the turn the model answers. */
  readonly messages: readonly ChatMessage[];
  readonly reference?: string;
}

export interface EvalItem {
  readonly id: string;
  readonly category: string;
  /** Shown in reports: the last user turn, or the decoded prompt of a prepared record. */
  readonly promptText: string;
  readonly promptTokens: readonly number[];
  readonly reference?: string;
  /** Prompt + reference with 1 on the supervised tokens (the reference and its end-of-turn token). */
  readonly scored?: { readonly tokens: Int32Array; readonly mask: Uint8Array };
}

export interface EvalData {
  readonly source: string;
  readonly items: EvalItem[];
  readonly rejections: Rejection[];
}

const messageSchema = z.strictObject({ role: z.enum(ROLES), content: z.string() });
const lineSchema = z
  .looseObject({
    prompt: z.string().min(1).optional(),
    messages: z.array(messageSchema).min(1).optional(),
    reference: z.string().optional(),
    category: z.string().min(1).optional(),
  })
  .refine((v) => (v.prompt === undefined) !== (v.messages === undefined), { message: 'give exactly one of "prompt" or "messages"' });

/** The prompt conversation and reference of one parsed line; a string is the reason it is unusable. */
function promptOf(line: z.output<typeof lineSchema>): { messages: ChatMessage[]; reference?: string } | string {
  if (line.prompt !== undefined) return { messages: [{ role: 'user', content: line.prompt }], ...(line.reference !== undefined ? { reference: line.reference } : {}) };
  const messages = [...line.messages!];
  let reference = line.reference;
  if (messages.at(-1)!.role === 'assistant') {
    if (reference !== undefined) return '"messages" ends with an assistant turn and "reference" is given too: which one is the reference?';
    reference = messages.pop()!.content;
  }
  if (messages.length === 0 || messages.at(-1)!.role === 'assistant') return '"messages" has no turn for the model to answer';
  return { messages, ...(reference !== undefined ? { reference } : {}) };
}

/** Reads an eval JSONL; bad lines are returned as rejections (file:line, reason), as `prepare` reports them. */
export async function readEvalJsonl(path: string): Promise<{ prompts: EvalPrompt[]; rejections: Rejection[] }> {
  const prompts: EvalPrompt[] = [];
  const rejections: Rejection[] = [];
  const reject = (line: number, reason: Rejection['reason'], message: string) => rejections.push({ reason, file: path, line, message });
  for await (const item of readJsonlLines(path)) {
    if (item.kind === 'blank') continue;
    if (item.kind === 'error') {
      reject(item.lineNumber, item.reason, item.message);
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(item.text);
    } catch (e) {
      reject(item.lineNumber, 'broken-json', (e as Error).message);
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      reject(item.lineNumber, 'not-an-object', `expected a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
      continue;
    }
    const parsed = lineSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      reject(item.lineNumber, 'schema', `${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}`);
      continue;
    }
    const prompt = promptOf(parsed.data);
    if (typeof prompt === 'string') {
      reject(item.lineNumber, 'no-assistant-turn', prompt);
      continue;
    }
    prompts.push({ id: `${path}:${item.lineNumber}`, category: parsed.data.category ?? DEFAULT_CATEGORY, ...prompt });
  }
  return { prompts, rejections };
}

/**
 * Token ids of a prompt: the scored sequence's tokens before its first supervised one when there is
 * a reference (exactly the prefix training saw), else the rendered prompt with a generation prompt.
 */
export function encodeEvalPrompt(p: EvalPrompt, tokenizer: TextTokenizer, template: ChatTemplate): EvalItem {
  const promptText = p.messages.at(-1)!.content;
  if (p.reference !== undefined) {
    const encoder = new ConversationEncoder(tokenizer, template);
    const { ids, mask } = encoder.encode({ kind: 'chat', messages: [...p.messages, { role: 'assistant', content: p.reference }] }, 'last-assistant');
    const first = mask.indexOf(1);
    if (first <= 0) throw new Error(`${p.id}: the reference has no tokens after the template is applied`);
    return { id: p.id, category: p.category, promptText, promptTokens: Array.from(ids.subarray(0, first)), reference: p.reference, scored: { tokens: ids, mask } };
  }
  const ids = [...tokenizer.encode(template.render([...p.messages], true))];
  if (tokenizer.addBos && tokenizer.bosId !== undefined && ids[0] !== tokenizer.bosId) ids.unshift(tokenizer.bosId);
  return { id: p.id, category: p.category, promptText, promptTokens: ids };
}

/** Ids that end an answer: EOS and the end-of-turn tokens of the common templates. */
export function stopTokensOf(tokenizer: TextTokenizer): number[] {
  return [tokenizer.eosId, tokenizer.tokenId('<|im_end|>'), tokenizer.tokenId('<|eot_id|>'), tokenizer.tokenId('<|end|>')].filter((t): t is number => t !== undefined);
}

/** The test split of a prepared folder: the last supervised run of each record is its reference. */
export function preparedTestItems(dir: string, tokenizer: TextTokenizer): EvalItem[] {
  const dataset = new PreparedDataset(dir);
  try {
    const recorded = dataset.manifest.tokenizer;
    if (recorded.sha256 !== tokenizer.fingerprint || recorded.vocabSize !== tokenizer.vocabSize) {
      throw new Error(`${dir} was prepared with the tokenizer of ${recorded.model} (sha256 ${recorded.sha256.slice(0, 12)}), not this model's: prepare it again with this model`);
    }
    const split = dataset.split('test');
    if (split.size === 0) throw new Error(`${dir}: the test split is empty (prepare with a test fraction, or give an eval JSONL)`);
    const stops = new Set(stopTokensOf(tokenizer));
    const items: EvalItem[] = [];
    for (let i = 0; i < split.size; i++) {
      const { tokens, mask } = split.read(i);
      const last = mask.lastIndexOf(1);
      if (last <= 0) continue;
      let start = last;
      while (start > 1 && mask[start - 1] === 1) start--;
      let end = last + 1;
      while (end > start && stops.has(tokens[end - 1]!)) end--;
      const promptTokens = Array.from(tokens.subarray(0, start));
      items.push({
        id: `${dir}#test:${i}`,
        category: DEFAULT_CATEGORY,
        promptText: tokenizer.decode(promptTokens),
        promptTokens,
        reference: tokenizer.decode(tokens.subarray(start, end)),
        scored: { tokens, mask: mask.map((m, j) => (j >= start ? m : 0)) },
      });
    }
    return items;
  } finally {
    dataset.close();
  }
}

/** An eval JSONL or a prepared folder (a directory with manifest.json). */
export async function loadEvalData(path: string, tokenizer: TextTokenizer, template: ChatTemplate): Promise<EvalData> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new Error(`${path}: not found (expected an eval JSONL or a prepared folder)`);
  if (info.isDirectory()) return { source: path, items: preparedTestItems(path, tokenizer), rejections: [] };
  const { prompts, rejections } = await readEvalJsonl(path);
  if (prompts.length === 0) {
    throw new Error(`${path}: no usable lines${rejections.length ? `; first problem: ${formatRejection(rejections[0]!)}` : ''}`);
  }
  return { source: path, items: prompts.map((p) => encodeEvalPrompt(p, tokenizer, template)), rejections };
}
