/**
 * ShareGPT `{"conversations": [{from, value}]}`. ICEBURG's own ShareGPT export writes `{role, content}`
 * inside `conversations`, so the message fields are chosen per message list by what the first
 * message carries.
 */
import type { FormatParser } from './types.js';
import { conversationIdOf, missing, qualityOf, toChatMessages } from './shared.js';

export const sharegptFormat: FormatParser = {
  matches: (obj, m) => Array.isArray(obj[m.conversations]),
  parse(obj, { mapping: m }) {
    const list = obj[m.conversations];
    if (list === undefined) throw missing(m.conversations);
    const first: unknown = Array.isArray(list) ? list[0] : undefined;
    const usesRoleContent = first !== null && typeof first === 'object' && m.role in first && !(m.from in first);
    const messages = usesRoleContent
      ? toChatMessages(list, m.conversations, m, m.role, m.content)
      : toChatMessages(list, m.conversations, m, m.from, m.value);
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
