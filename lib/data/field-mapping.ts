/**
 * Field names that differ between exporters. Every record format reads its fields through this
 * mapping, so a differently-named export needs configuration, not code. The defaults are the names
 * the formats' own documentation and ICEBURG's FineTuningLogger use:
 *
 * | format                | fields read (defaults)                                                   |
 * |-----------------------|--------------------------------------------------------------------------|
 * | chatml                | messages[].{role, content, weight}                                       |
 * | sharegpt              | conversations[].{from, value} or conversations[].{role, content}         |
 * | alpaca                | instruction, input, output, system                                       |
 * | completion            | prompt, completion                                                       |
 * | text                  | text                                                                     |
 * | iceburg-conversations | messages, metadata.quality_score, metadata.conversation_id               |
 * | iceburg-reasoning     | reasoning_chain[].{step, agent, thinking, action, output}, final_response,|
 * |                       | metadata.query                                                           |
 * | iceburg-quality       | conversation_id, quality_metrics.quality_score                           |
 * | iceburg-agent         | agent_name, generated_code, validation_result.valid, metadata.prompt     |
 *
 * Quality and conversation id are looked up in `metadata` first, then at the top level, for every
 * format, so any record may carry a score.
 */
import { z } from 'zod';
import type { Role } from './record.js';

export const fieldMappingSchema = z
  .object({
    messages: z.string().default('messages'),
    role: z.string().default('role'),
    content: z.string().default('content'),
    weight: z.string().default('weight'),
    conversations: z.string().default('conversations'),
    from: z.string().default('from'),
    value: z.string().default('value'),
    instruction: z.string().default('instruction'),
    input: z.string().default('input'),
    output: z.string().default('output'),
    system: z.string().default('system'),
    prompt: z.string().default('prompt'),
    completion: z.string().default('completion'),
    text: z.string().default('text'),
    metadata: z.string().default('metadata'),
    qualityScore: z.string().default('quality_score'),
    conversationId: z.string().default('conversation_id'),
    qualityMetrics: z.string().default('quality_metrics'),
    reasoningChain: z.string().default('reasoning_chain'),
    finalResponse: z.string().default('final_response'),
    reasoningQuery: z.string().default('query'),
    agentName: z.string().default('agent_name'),
    generatedCode: z.string().default('generated_code'),
    validationResult: z.string().default('validation_result'),
    agentPrompt: z.string().default('prompt'),
    /** Extra role names mapped onto the four canonical roles, e.g. {"bot": "assistant"}. */
    roleAliases: z.record(z.string(), z.enum(['system', 'user', 'assistant', 'tool'])).default({}),
  })
  .strict();

export type FieldMapping = z.infer<typeof fieldMappingSchema>;
export type FieldMappingInput = z.input<typeof fieldMappingSchema>;

export function resolveFieldMapping(input: FieldMappingInput = {}): FieldMapping {
  return fieldMappingSchema.parse(input);
}

/** Role names seen in the wild (OpenAI, ShareGPT, LLaMA-Factory, Gemini) and what they mean here. */
const BUILTIN_ROLE_ALIASES: Record<string, Role> = {
  system: 'system',
  user: 'user',
  human: 'user',
  assistant: 'assistant',
  gpt: 'assistant',
  model: 'assistant',
  bot: 'assistant',
  function_call: 'assistant',
  tool: 'tool',
  function: 'tool',
  observation: 'tool',
  ipython: 'tool',
};

export function canonicalRole(name: string, mapping: FieldMapping): Role | undefined {
  const key = name.trim().toLowerCase();
  return mapping.roleAliases[key] ?? mapping.roleAliases[name] ?? BUILTIN_ROLE_ALIASES[key];
}
