/**
 * ICEBURG's raw FineTuningLogger files under `data/fine_tuning/`:
 * - conversations.jsonl      `{messages, metadata: {..., quality_score: number|null, timestamp}}`
 * - reasoning_chains.jsonl   `{reasoning_chain: [{step, agent, thinking, action, output}], final_response, metadata: {query?, ...}}`
 * - quality_metrics.jsonl    `{conversation_id, quality_metrics: {user_rating, quality_score, ...}, timestamp}`
 * - agent_generations.jsonl  `{agent_name, generated_code, validation_result: {valid, ...}, metadata}`
 */
import { z } from 'zod';
import type { ChatMessage } from '../record.js';
import type { FormatParser } from './types.js';
import type { JsonObject } from './shared.js';
import {
  answerText,
  conversationIdOf,
  messageListSchema,
  nonEmptyText,
  objectSchema,
  parseWith,
  perMapping,
  qualityOf,
  reasonIssue,
  requiredString,
} from './shared.js';

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export const iceburgConversationsFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.messages]) && isObject(obj[m.metadata]),
  parse(obj, { mapping: m }) {
    const messages = parseWith(messageListSchema(m, m.role, m.content), obj[m.messages], m.messages);
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};

const stepSchema = z.object({
  step: z.union([z.number(), z.string()]).optional(),
  agent: z.string().optional(),
  thinking: z.string().optional(),
  action: z.string().optional(),
  output: z.unknown().optional(),
});
type Step = z.infer<typeof stepSchema>;

function describeStep(step: Step, index: number): string {
  const head = `${step.step ?? index + 1}.${step.agent ? ` [${step.agent}]` : ''}`;
  const parts = [step.thinking?.trim(), step.action ? `Action: ${step.action.trim()}` : undefined].filter((p): p is string => !!p);
  return `${head} ${parts.join(' ')}`.trimEnd();
}

const reasoningSchema = perMapping((m) =>
  z.object({
    [m.reasoningChain]: z
      .array(stepSchema, { error: (iss) => (iss.input === undefined ? 'required field is missing' : 'expected an array') })
      .check((ctx) => {
        if (ctx.value.length === 0) ctx.issues.push(reasonIssue('empty-messages', 'is empty', ctx.value));
      }),
    [m.metadata]: z.looseObject({ [m.reasoningQuery]: nonEmptyText }, { error: 'expected an object' }),
    [m.finalResponse]: answerText,
  }),
);

/**
 * The query from metadata is the user turn and the final response the assistant turn. With
 * `reasoning: 'inline'` the chain is written before the answer so the model learns to show it.
 */
export const iceburgReasoningFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.reasoningChain]),
  parse(obj, { mapping: m, reasoning }) {
    const fields = parseWith(reasoningSchema(m), obj);
    const chain = fields[m.reasoningChain] as Step[];
    const query = (fields[m.metadata] as Record<string, string>)[m.reasoningQuery]!;
    const answer = fields[m.finalResponse] as string;
    const content = reasoning === 'inline' ? `Reasoning:\n${chain.map(describeStep).join('\n')}\n\nAnswer:\n${answer}` : answer;
    const messages: ChatMessage[] = [
      { role: 'user', content: query },
      { role: 'assistant', content },
    ];
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};

const qualityLineSchema = perMapping((m) =>
  z.object({
    [m.conversationId]: z.union([z.string().min(1), z.number().transform(String)], {
      error: (iss) => (iss.input === undefined ? 'required field is missing' : 'expected a string'),
    }),
    [m.qualityMetrics]: objectSchema,
  }),
);

/**
 * A score for another record. `quality` is null when the metrics carry no `quality_score`; such a
 * line leaves the conversation's own score alone (prepare.ts). `user_rating` is not turned into a
 * score: ICEBURG does not define its scale, and --min-quality must mean one thing for every record.
 */
export const iceburgQualityFormat: FormatParser = {
  matches: (obj, m) => isObject(obj[m.qualityMetrics]) && m.conversationId in obj,
  parse(obj, { mapping: m }) {
    const fields = parseWith(qualityLineSchema(m), obj);
    const metrics = fields[m.qualityMetrics] as JsonObject;
    return { kind: 'quality', conversationId: fields[m.conversationId] as string, quality: qualityOf({ [m.metadata]: metrics }, m) };
  },
};

const agentSchema = perMapping((m) =>
  z.object({
    [m.agentName]: nonEmptyText,
    [m.generatedCode]: requiredString,
    [m.validationResult]: objectSchema.optional(),
    [m.metadata]: objectSchema.optional(),
  }),
);

/**
 * Only generations whose validation passed are examples. A failed one is a routine line of the log,
 * not an error in it: it is filtered (counted with its reason), so --strict does not stop on it.
 */
export const iceburgAgentFormat: FormatParser = {
  matches: (obj, m) => m.agentName in obj && m.generatedCode in obj,
  parse(obj, { mapping: m }) {
    const fields = parseWith(agentSchema(m), obj);
    const validation = fields[m.validationResult] as JsonObject | undefined;
    if (validation?.valid !== true) {
      const why = validation === undefined ? `has no ${m.validationResult}` : `${m.validationResult}.valid is ${JSON.stringify(validation.valid ?? null)}`;
      return { kind: 'filtered', reason: 'invalid-generation', message: `generation ${why}, only validated ones are examples` };
    }
    const name = fields[m.agentName] as string;
    const code = parseWith(nonEmptyText, fields[m.generatedCode], m.generatedCode);
    const meta = (fields[m.metadata] as JsonObject | undefined) ?? {};
    const prompt = meta[m.agentPrompt];
    const user = typeof prompt === 'string' && prompt.trim() !== '' ? prompt.trim() : `Write the Python code for the ICEBURG agent "${name}".`;
    const messages: ChatMessage[] = [
      { role: 'user', content: user },
      { role: 'assistant', content: code },
    ];
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
