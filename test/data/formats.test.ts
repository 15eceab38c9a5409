import { describe, expect, it } from 'vitest';
import { RecordError } from '../../lib/data/errors.js';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { detectFileFormat, FORMAT_PARSERS, type ParsedLine } from '../../lib/data/formats/index.js';
import type { RecordFormat } from '../../lib/data/record.js';

const mapping = resolveFieldMapping();
const parse = (format: RecordFormat, raw: Record<string, unknown>, reasoning: 'omit' | 'inline' = 'omit', m = mapping): ParsedLine =>
  FORMAT_PARSERS[format].parse(raw, { mapping: m, reasoning });
const reasonOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof RecordError) return e.reason;
    throw e;
  }
  return 'no error';
};

describe('record formats', () => {
  it('ShareGPT accepts {from, value} and ICEBURG\'s {role, content} inside conversations', () => {
    const a = parse('sharegpt', { conversations: [{ from: 'human', value: ' Hi ' }, { from: 'gpt', value: 'Hello' }] });
    const b = parse('sharegpt', { conversations: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] });
    expect(a).toEqual(b);
    expect(a).toMatchObject({ body: { kind: 'chat', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] } });
  });

  it('per-message weight 0/1 is kept; other values are rejected', () => {
    const p = parse('chatml', { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a', weight: 0 }, { role: 'user', content: 'q2' }, { role: 'assistant', content: 'b', weight: 1 }] });
    expect(p).toMatchObject({ body: { messages: [{}, { weight: 0 }, {}, { weight: 1 }] } });
    expect(reasonOf(() => parse('chatml', { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a', weight: 0 }] }))).toBe('no-assistant-turn');
  });

  it('Alpaca joins instruction and input, keeps system', () => {
    expect(parse('alpaca', { instruction: 'Translate', input: 'chat', output: 'cat', system: 'S' })).toMatchObject({
      body: { messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'Translate\n\nchat' }, { role: 'assistant', content: 'cat' }] },
    });
  });

  it('ICEBURG reasoning chains: query → user, final response → assistant, chain inline on request', () => {
    const raw = { reasoning_chain: [{ step: 1, agent: 'oracle', thinking: 'Weigh it.', action: 'decide' }, { step: 2, thinking: 'Done.' }], final_response: 'Yes.', metadata: { query: 'Is it?' } };
    expect(parse('iceburg-reasoning', raw)).toMatchObject({ body: { messages: [{ role: 'user', content: 'Is it?' }, { role: 'assistant', content: 'Yes.' }] } });
    expect(parse('iceburg-reasoning', raw, 'inline')).toMatchObject({
      body: { messages: [{}, { content: 'Reasoning:\n1. [oracle] Weigh it. Action: decide\n2. Done.\n\nAnswer:\nYes.' }] },
    });
  });

  it('ICEBURG quality metrics carry a score for a conversation id; agent generations need valid: true', () => {
    expect(parse('iceburg-quality', { conversation_id: 'c1', quality_metrics: { user_rating: 5, quality_score: 0.7 } })).toEqual({ kind: 'quality', conversationId: 'c1', quality: 0.7 });
    // A failed generation is a valid line that is not an example: filtered with a reason, not an error.
    expect(parse('iceburg-agent', { agent_name: 'a', generated_code: 'def f(:', validation_result: { valid: false } })).toMatchObject({ kind: 'filtered', reason: 'invalid-generation' });
    expect(parse('iceburg-agent', { agent_name: 'a', generated_code: 'x = 1' })).toMatchObject({ kind: 'filtered', reason: 'invalid-generation' });
    expect(reasonOf(() => parse('iceburg-agent', { agent_name: 'a', generated_code: 'x = 1', validation_result: 'yes' }))).toBe('schema');
    expect(parse('iceburg-agent', { agent_name: 'a', generated_code: 'x = 1', validation_result: { valid: true }, metadata: { prompt: 'Make a' } })).toMatchObject({
      body: { messages: [{ role: 'user', content: 'Make a' }, { role: 'assistant', content: 'x = 1' }] },
    });
  });

  it('quality must be a number in [0, 1] or null', () => {
    expect(reasonOf(() => parse('chatml', { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], metadata: { quality_score: 'high' } }))).toBe('schema');
    expect(parse('chatml', { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], quality_score: 1 })).toMatchObject({ quality: 1 });
  });

  it('field names and role names are configurable', () => {
    const m = resolveFieldMapping({ messages: 'turns', role: 'speaker', content: 'text', roleAliases: { agent: 'assistant', customer: 'user' } });
    expect(parse('chatml', { turns: [{ speaker: 'customer', text: 'q' }, { speaker: 'agent', text: 'a' }] }, 'omit', m)).toMatchObject({
      body: { messages: [{ role: 'user' }, { role: 'assistant' }] },
    });
    expect(() => resolveFieldMapping({ mesages: 'x' } as never)).toThrow();
  });

  it('detection picks the most specific format the sample agrees on', () => {
    const conv = { messages: [{ role: 'user', content: 'q' }], metadata: { quality_score: 0.9 } };
    expect(detectFileFormat([conv, conv, { messages: [] }], mapping)).toBe('iceburg-conversations');
    expect(detectFileFormat([{ messages: [] }, { messages: [] }], mapping)).toBe('chatml');
    expect(detectFileFormat([{ prompt: 'p', completion: 'c' }], mapping)).toBe('completion');
    expect(detectFileFormat([{ text: 't' }], mapping)).toBe('text');
    expect(detectFileFormat([{ nothing: 1 }], mapping)).toBeUndefined();
  });

  it.each([
    ['chatml', { messages: [{ role: 'user', content: 42 }, { role: 'assistant', content: 'x' }] }, 'schema', 'messages[0].content: expected a string'],
    ['chatml', { messages: [] }, 'empty-messages', 'messages is empty'],
    ['chatml', {}, 'schema', 'messages: required field is missing'],
    ['chatml', { messages: [{ role: 'wizard', content: 'hi' }] }, 'unknown-role', 'messages[0].role: unknown role "wizard"'],
    ['chatml', { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: '  ' }] }, 'empty-content', 'messages[1].content is empty'],
    ['chatml', { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'x', weight: 0.5 }] }, 'bad-weight', 'messages[1].weight: expected 0 or 1, got 0.5'],
    ['chatml', { messages: [{ role: 'user', content: 'hi' }] }, 'no-assistant-turn', 'messages has no assistant turn to train on'],
    ['chatml', { messages: ['x'] }, 'schema', 'messages[0]: expected an object'],
    ['sharegpt', { conversations: [{ from: 'human', value: 'x' }, { from: 'gpt' }] }, 'schema', 'conversations[1].value: required field is missing'],
    ['alpaca', { instruction: 'x' }, 'no-assistant-turn', 'output: required field is missing'],
    ['alpaca', { instruction: 'x', output: 'y', input: 4 }, 'schema', 'input: expected a string'],
    ['completion', { prompt: 'p', completion: '' }, 'empty-content', 'completion is empty'],
    ['text', { text: 5 }, 'schema', 'text: expected a string'],
    ['iceburg-reasoning', { reasoning_chain: [], final_response: 'x', metadata: { query: 'q' } }, 'empty-messages', 'reasoning_chain is empty'],
    ['iceburg-quality', { conversation_id: 'c', quality_metrics: { quality_score: 3 } }, 'schema', 'quality_score: expected a number in [0, 1] or null, got 3'],
  ] as const)('%s: %j is rejected as %s, "%s"', (format, raw, reason, message) => {
    let error: unknown;
    try {
      parse(format, raw as Record<string, unknown>);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RecordError);
    expect([(error as RecordError).reason, (error as RecordError).message]).toEqual([reason, message]);
  });
});
