/**
 * Alpaca `{instruction, input, output, system?}`. The user turn is the instruction, followed by the
 * input after a blank line when there is one (the Alpaca prompt's "### Input:" section).
 */
import type { ChatMessage } from '../record.js';
import type { FormatParser } from './types.js';
import { conversationIdOf, nonEmpty, qualityOf } from './shared.js';
import { RecordError } from '../errors.js';

function optionalText(raw: unknown, field: string): string {
  if (raw === undefined || raw === null) return '';
  if (typeof raw !== 'string') throw new RecordError('schema', `${field}: expected a string`);
  return raw.trim();
}

export const alpacaFormat: FormatParser = {
  matches: (obj, m) => m.instruction in obj && m.output in obj,
  parse(obj, { mapping: m }) {
    const instruction = nonEmpty(obj[m.instruction], m.instruction);
    const input = optionalText(obj[m.input], m.input);
    const system = optionalText(obj[m.system], m.system);
    if (obj[m.output] === undefined) throw new RecordError('no-assistant-turn', `${m.output}: required field is missing`);
    const output = nonEmpty(obj[m.output], m.output);
    const messages: ChatMessage[] = [];
    if (system) messages.push({ role: 'system', content: system });
    messages.push({ role: 'user', content: input ? `${instruction}\n\n${input}` : instruction });
    messages.push({ role: 'assistant', content: output });
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
