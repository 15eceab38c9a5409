/** OpenAI / ChatML `{"messages": [{role, content, weight?}]}`. */
import type { FormatParser } from './types.js';
import { conversationIdOf, messageListSchema, parseWith, qualityOf } from './shared.js';

export const chatmlFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.messages]),
  parse(obj, { mapping: m }) {
    const messages = parseWith(messageListSchema(m, m.role, m.content), obj[m.messages], m.messages);
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
