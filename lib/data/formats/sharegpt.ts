/**
 * ShareGPT `{"conversations": [{from, value}]}`. ICEBURG's own ShareGPT export writes `{role, content}`
 * inside `conversations`, so the message fields are chosen per message list by what the first
 * message carries.
 */
import type { FormatParser } from './types.js';
import { conversationIdOf, messageListSchema, parseWith, qualityOf } from './shared.js';

export const sharegptFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.conversations]),
  parse(obj, { mapping: m }) {
    const list = obj[m.conversations];
    const first: unknown = Array.isArray(list) ? list[0] : undefined;
    const usesRoleContent = first !== null && typeof first === 'object' && m.role in first && !(m.from in first);
    const schema = usesRoleContent ? messageListSchema(m, m.role, m.content) : messageListSchema(m, m.from, m.value);
    const messages = parseWith(schema, list, m.conversations);
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
