/**
 * Acceptance: for each record format and each built-in template, the trained tokens are exactly the
 * assistant contents plus their end-of-turn tokens. "Exactly" is checked on the tokens' own bytes
 * (surfaceText), not on a decoder that could strip a stray space.
 */
import { describe, expect, it } from 'vitest';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { FORMAT_PARSERS } from '../../lib/data/formats/index.js';
import type { ChatMessage, RecordBody, RecordFormat } from '../../lib/data/record.js';
import { BUILTIN_TEMPLATES, type BuiltinTemplateName } from '../../lib/tokenizer/builtin-templates.js';
import { ChatTemplate } from '../../lib/tokenizer/chat-template.js';
import { ConversationEncoder, type TrainOn } from '../../lib/tokenizer/conversation-encoder.js';
import type { TextTokenizer } from '../../lib/tokenizer/text-tokenizer.js';
import { chatmlSpmTokenizer, llama3Tokenizer, spmTokenizer } from '../fixtures/tokenizers/fixture-tokenizers.js';
import { llama3Files } from '../fixtures/tokenizers/real-tokenizers.js';

const mapping = resolveFieldMapping();

/** Contiguous trained runs, as text. */
function trainedRuns(tok: TextTokenizer, ids: Int32Array, mask: Uint8Array): string[] {
  const runs: string[] = [];
  let start = -1;
  for (let i = 0; i <= ids.length; i++) {
    const on = i < ids.length && mask[i] === 1;
    if (on && start < 0) start = i;
    if (!on && start >= 0) {
      runs.push(tok.surfaceText(ids, start, i));
      start = -1;
    }
  }
  return runs;
}

const SYSTEM = 'You are ICEBURG, a research assistant.';
const Q1 = 'What drives ocean heat content?';
const A1 = 'Mostly greenhouse forcing; the oceans absorb about 90% of the excess heat.';
const Q2 = 'Cite a dataset, please 🙏';
const A2 = 'Argo floats (since 2000) — see "Argo float data", doi:10.17882/42182.';

/** One raw line per format, each with the same assistant answers. */
const RAW: Record<Exclude<RecordFormat, 'iceburg-quality' | 'text'>, { raw: Record<string, unknown>; answers: string[]; hasSystem: boolean }> = {
  chatml: {
    raw: { messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: Q1 }, { role: 'assistant', content: A1 }, { role: 'user', content: Q2 }, { role: 'assistant', content: A2 }] },
    answers: [A1, A2],
    hasSystem: true,
  },
  sharegpt: {
    raw: { conversations: [{ from: 'human', value: Q1 }, { from: 'gpt', value: A1 }, { from: 'human', value: Q2 }, { from: 'gpt', value: A2 }] },
    answers: [A1, A2],
    hasSystem: false,
  },
  alpaca: { raw: { instruction: Q1, input: 'Be brief.', output: A1, system: SYSTEM }, answers: [A1], hasSystem: true },
  completion: { raw: { prompt: Q1, completion: A1 }, answers: [A1], hasSystem: false },
  'iceburg-conversations': {
    raw: { messages: [{ role: 'user', content: Q1 }, { role: 'assistant', content: A1 }], metadata: { quality_score: 0.9, timestamp: '2025-01-01T00:00:00' } },
    answers: [A1],
    hasSystem: false,
  },
  'iceburg-reasoning': {
    raw: { reasoning_chain: [{ step: 1, agent: 'surveyor', thinking: 'look up', action: 'search', output: {} }], final_response: A2, metadata: { query: Q2, timestamp: 't' } },
    answers: [A2],
    hasSystem: false,
  },
  'iceburg-agent': {
    raw: { agent_name: 'heat_agent', generated_code: 'def run():\n    return 42', validation_result: { valid: true }, metadata: {} },
    answers: ['def run():\n    return 42'],
    hasSystem: false,
  },
};

function parse(format: RecordFormat, raw: Record<string, unknown>): RecordBody {
  const parsed = FORMAT_PARSERS[format].parse(raw, { mapping, reasoning: 'omit' });
  if (parsed.kind !== 'record') throw new Error('expected a record');
  return parsed.body;
}

interface TemplateCase {
  template: BuiltinTemplateName;
  tokenizer: () => TextTokenizer;
  end: string;
  supportsSystem: boolean;
}

const CASES: TemplateCase[] = [
  { template: 'chatml', tokenizer: chatmlSpmTokenizer, end: '<|im_end|>', supportsSystem: true },
  { template: 'mistral', tokenizer: spmTokenizer, end: '</s>', supportsSystem: true },
  { template: 'llama-3', tokenizer: llama3Tokenizer, end: '<|eot_id|>', supportsSystem: true },
  { template: 'alpaca', tokenizer: spmTokenizer, end: '</s>', supportsSystem: true },
];

function encoderFor(c: TemplateCase): ConversationEncoder {
  const tok = c.tokenizer();
  const specials = { ...(tok.bosToken ? { bos_token: tok.bosToken } : {}), ...(tok.eosToken ? { eos_token: tok.eosToken } : {}) };
  return new ConversationEncoder(tok, new ChatTemplate(c.template, BUILTIN_TEMPLATES[c.template], specials));
}

describe.each(CASES)('template $template', (c) => {
  const enc = encoderFor(c);
  const tok = c.tokenizer();

  it.each(Object.keys(RAW) as Array<keyof typeof RAW>)('format %s: trained spans are the answers plus end tokens', (format) => {
    const { raw, answers } = RAW[format];
    const { ids, mask } = enc.encode(parse(format, raw));
    expect(trainedRuns(tok, ids, mask)).toEqual(answers.map((a) => a + c.end));
    expect(ids[0]).toBe(tok.bosId); // exactly one BOS, never trained
    expect(ids[1]).not.toBe(tok.bosId);
    expect(mask[0]).toBe(0);
  });

  it('format text: the whole text plus EOS is trained', () => {
    const { ids, mask } = enc.encode(parse('text', { text: A1 }));
    expect(trainedRuns(tok, ids, mask)).toEqual([A1 + tok.eosToken]);
  });

  it('weight 0 excludes a turn; last-assistant trains only the final one; all trains the prompt too', () => {
    const body: RecordBody = {
      kind: 'chat',
      messages: [
        { role: 'user', content: Q1 },
        { role: 'assistant', content: A1, weight: 0 },
        { role: 'user', content: Q2 },
        { role: 'assistant', content: A2 },
      ],
    };
    const run = (trainOn: TrainOn) => {
      const { ids, mask } = enc.encode(body, trainOn);
      return trainedRuns(tok, ids, mask);
    };
    expect(run('assistant')).toEqual([A2 + c.end]);
    const both: RecordBody = { kind: 'chat', messages: (body as { messages: ChatMessage[] }).messages.map(({ role, content }) => ({ role, content })) };
    const { ids, mask } = enc.encode(both, 'last-assistant');
    expect(trainedRuns(tok, ids, mask)).toEqual([A2 + c.end]);
    const all = run('all');
    // Everything after BOS is trained except the weight-0 answer (and what its tokens straddle).
    expect(all.join('')).not.toContain(A1);
    expect(all.join('')).toContain(Q1);
    expect(all.join('')).toContain(A2 + c.end);
  });
});

describe('model templates', () => {
  it("Llama 3's own template (which trims content) gives the same exact spans", () => {
    const files = llama3Files();
    const tok = llama3Tokenizer();
    const template = new ChatTemplate('llama3 tokenizer_config', files.config.chat_template as string, { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' });
    const enc = new ConversationEncoder(tok, template);
    const { ids, mask } = enc.encode(parse('chatml', RAW.chatml.raw));
    expect(trainedRuns(tok, ids, mask)).toEqual([`${A1}<|eot_id|>`, `${A2}<|eot_id|>`]);
    // The mask must not depend on the encoder: the ids equal a plain encode of the rendered text.
    expect(Array.from(ids)).toEqual(Array.from(tok.encode(template.render(RAW.chatml.raw.messages as ChatMessage[]))));
  });

  it('a template that cannot render a record raises a TemplateRenderError (the record is rejected)', () => {
    const enc = encoderFor(CASES[1]!);
    const body: RecordBody = { kind: 'chat', messages: [{ role: 'user', content: 'x' }, { role: 'tool', content: 'y' }, { role: 'assistant', content: 'z' }] };
    expect(() => enc.encode(body)).toThrow(/role tool is not supported|alternate/);
  });

  it('the ChatML rendering matches Ollama\'s chatml template text', () => {
    const t = new ChatTemplate('chatml', BUILTIN_TEMPLATES.chatml, {});
    expect(t.render([{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }], true)).toBe(
      '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n',
    );
  });
});
