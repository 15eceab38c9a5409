/**
 * `{prompt, completion}` pairs become a user and an assistant turn, so the chat template supplies
 * the end-of-turn token; `{text}` is trained whole (continued pretraining style).
 */
import type { FormatParser } from './types.js';
import { conversationIdOf, nonEmpty, qualityOf } from './shared.js';
import { RecordError } from '../errors.js';

export const completionFormat: FormatParser = {
  matches: (obj, m) => m.prompt in obj && m.completion in obj,
  parse(obj, { mapping: m }) {
    const prompt = nonEmpty(obj[m.prompt], m.prompt);
    if (obj[m.completion] === undefined) throw new RecordError('no-assistant-turn', `${m.completion}: required field is missing`);
    const completion = nonEmpty(obj[m.completion], m.completion);
    return {
      kind: 'record',
      body: { kind: 'chat', messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: completion }] },
      quality: qualityOf(obj, m),
      conversationId: conversationIdOf(obj, m),
    };
  },
};

export const textFormat: FormatParser = {
  matches: (obj, m) => typeof obj[m.text] === 'string',
  parse(obj, { mapping: m }) {
    if (obj[m.text] === undefined) throw new RecordError('schema', `${m.text}: required field is missing`);
    const text = nonEmpty(obj[m.text], m.text);
    return { kind: 'record', body: { kind: 'text', text }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
