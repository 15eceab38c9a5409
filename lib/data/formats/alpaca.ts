/**
 * Alpaca `{instruction, input, output, system?}`. The user turn is the instruction, followed by the
 * input after a blank line when there is one (the Alpaca prompt's "### Input:" section).
 */
import { z } from 'zod';
import type { ChatMessage } from '../record.js';
import type { FormatParser } from './types.js';
import { answerText, conversationIdOf, nonEmptyText, optionalText, parseWith, perMapping, qualityOf } from './shared.js';

// Key order is the order fields are checked in, so the first problem reported is the first field's.
const alpacaSchema = perMapping((m) => z.object({ [m.instruction]: nonEmptyText, [m.input]: optionalText, [m.system]: optionalText, [m.output]: answerText }));

export const alpacaFormat: FormatParser = {
  matches: (obj, m) => m.instruction in obj && m.output in obj,
  parse(obj, { mapping: m }) {
    const fields = parseWith(alpacaSchema(m), obj) as Record<string, string>;
    const instruction = fields[m.instruction]!;
    const input = fields[m.input]!;
    const messages: ChatMessage[] = [];
    if (fields[m.system]) messages.push({ role: 'system', content: fields[m.system]! });
    messages.push({ role: 'user', content: input ? `${instruction}\n\n${input}` : instruction });
    messages.push({ role: 'assistant', content: fields[m.output]! });
    return { kind: 'record', body: { kind: 'chat', messages }, quality: qualityOf(obj, m), conversationId: conversationIdOf(obj, m) };
  },
};
