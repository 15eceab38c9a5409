/**
 * `{prompt, completion}` pairs become a user and an assistant turn, so the chat template supplies
 * the end-of-turn token; `{text}` is trained whole (continued pretraining style).
 */
import { z } from 'zod';
import type { FormatParser } from './types.js';
import { answerText, conversationIdOf, nonEmptyText, parseWith, perMapping, qualityOf } from './shared.js';

const completionSchema = perMapping((m) => z.object({ [m.prompt]: nonEmptyText, [m.completion]: answerText }));

export const completionFormat: FormatParser = {
  matches: (obj, m) => m.prompt in obj && m.completion in obj,
  parse(obj, { mapping: m }) {
    const fields = parseWith(completionSchema(m), obj) as Record<string, string>;
    return {
      kind: 'record',
      body: { kind: 'chat', messages: [{ role: 'user', content: fields[m.prompt]! }, { role: 'assistant', content: fields[m.completion]! }] },
      quality: qualityOf(obj, m),
      conversationId: conversationIdOf(obj, m),
    };
  },
};

export const textFormat: FormatParser = {
  matches: (obj, m) => typeof obj[m.text] === 'string',
  parse(obj, { mapping: m }) {
    const text = parseWith(nonEmptyText, obj[m.text], m.text);
    return { kind: 'record', body: { kind: 'text', text }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
