/**
 * ICEBURG's raw FineTuningLogger files under `data/fine_tuning/`:
 * - conversations.jsonl      `{messages, metadata: {..., quality_score: number|null, timestamp}}`
 * - reasoning_chains.jsonl   `{reasoning_chain: [{step, agent, thinking, action, output}], final_response, metadata: {query?, ...}}`
 * - quality_metrics.jsonl    `{conversation_id, quality_metrics: {user_rating, quality_score, ...}, timestamp}`
 * - agent_generations.jsonl  `{agent_name, generated_code, validation_result: {valid, ...}, metadata}`
 */
import { z } from 'zod';
import { RecordError } from '../errors.js';
import type { ChatMessage } from '../record.js';
import type { FormatParser } from './types.js';
import type { JsonObject } from './shared.js';
import { conversationIdOf, missing, nonEmpty, parseWith, qualityOf, toChatMessages } from './shared.js';

const objectSchema = z.record(z.string(), z.unknown());

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export const iceburgConversationsFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.messages]) && isObject(obj[m.metadata]),
  parse(obj, { mapping: m }) {
    if (!(m.messages in obj)) throw missing(m.messages);
    const messages = toChatMessages(obj[m.messages], m.messages, m, m.role, m.content);
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

function describeStep(step: z.infer<typeof stepSchema>, index: number): string {
  const head = `${step.step ?? index + 1}.${step.agent ? ` [${step.agent}]` : ''}`;
  const parts = [step.thinking?.trim(), step.action ? `Action: ${step.action.trim()}` : undefined].filter((p): p is string => !!p);
  return `${head} ${parts.join(' ')}`.trimEnd();
}

/**
 * The query from metadata is the user turn and the final response the assistant turn. With
 * `reasoning: 'inline'` the chain is written before the answer so the model learns to show it.
 */
export const iceburgReasoningFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.reasoningChain]),
  parse(obj, { mapping: m, reasoning }) {
    if (obj[m.reasoningChain] === undefined) throw missing(m.reasoningChain);
    const chain = parseWith(z.array(stepSchema), obj[m.reasoningChain]);
    if (chain.length === 0) throw new RecordError('empty-messages', `${m.reasoningChain} is empty`);
    const meta = obj[m.metadata];
    if (!isObject(meta)) throw new RecordError('schema', `${m.metadata}: expected an object`);
    const query = nonEmpty(meta[m.reasoningQuery], `${m.metadata}.${m.reasoningQuery}`);
    if (obj[m.finalResponse] === undefined) throw new RecordError('no-assistant-turn', `${m.finalResponse}: required field is missing`);
    const answer = nonEmpty(obj[m.finalResponse], m.finalResponse);
    const content = reasoning === 'inline' ? `Reasoning:\n${chain.map(describeStep).join('\n')}\n\nAnswer:\n${answer}` : answer;
    const messages: ChatMessage[] = [
      { role: 'user', content: query },
      { role: 'assistant', content },
    ];
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};

export const iceburgQualityFormat: FormatParser = {
  matches: (obj, m) => isObject(obj[m.qualityMetrics]) && m.conversationId in obj,
  parse(obj, { mapping: m }) {
    const id = obj[m.conversationId];
    if (typeof id !== 'string' && typeof id !== 'number') throw new RecordError('schema', `${m.conversationId}: expected a string`);
    const metrics = parseWith(objectSchema, obj[m.qualityMetrics]);
    return { kind: 'quality', conversationId: String(id), quality: qualityOf({ [m.metadata]: metrics }, m) };
  },
};

/** Only generations whose validation passed are examples; failed ones are rejected, not trained. */
export const iceburgAgentFormat: FormatParser = {
  matches: (obj, m) => m.agentName in obj && m.generatedCode in obj,
  parse(obj, { mapping: m }) {
    const name = nonEmpty(obj[m.agentName], m.agentName);
    const code = nonEmpty(obj[m.generatedCode], m.generatedCode);
    const validation = parseWith(objectSchema, obj[m.validationResult] ?? {});
    if (validation.valid !== true) throw new RecordError('invalid-generation', `${m.validationResult}.valid is not true`);
    const meta = isObject(obj[m.metadata]) ? (obj[m.metadata] as JsonObject) : {};
    const prompt = meta[m.agentPrompt];
    const user = typeof prompt === 'string' && prompt.trim() !== '' ? prompt.trim() : `Write the Python code for the ICEBURG agent "${name}".`;
    const messages: ChatMessage[] = [
      { role: 'user', content: user },
      { role: 'assistant', content: code },
    ];
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
