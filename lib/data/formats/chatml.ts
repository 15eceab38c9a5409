/** OpenAI / ChatML `{"messages": [{role, content, weight?}]}`. */
import type { FormatParser } from './types.js';
import { conversationIdOf, missing, qualityOf, toChatMessages } from './shared.js';

export const chatmlFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.messages]),
  parse(obj, { mapping: m }) {
    if (!(m.messages in obj)) throw missing(m.messages);
    const messages = toChatMessages(obj[m.messages], m.messages, m, m.role, m.content);
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
