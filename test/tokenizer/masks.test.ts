/**
 * Acceptance: for each record format and each built-in template, the trained tokens are exactly the
 * assistant contents plus their end-of-turn tokens. "Exactly" is judged twice: by llama.cpp's
 * detokenizer (a separate C++ implementation of the same vocabularies) and by the tokens' own bytes
 * (surfaceText). The answers are chosen to break a mask that trusts BPE to start a token where the
 * answer starts: punctuation, JSON, emoji and `▁` right after the prompt.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { FORMAT_PARSERS } from '../../lib/data/formats/index.js';
import type { ChatMessage, RecordBody, RecordFormat } from '../../lib/data/record.js';
import { BUILTIN_TEMPLATES, type BuiltinTemplateName } from '../../lib/tokenizer/builtin-templates.js';
import { ChatTemplate } from '../../lib/tokenizer/chat-template.js';
import { ConversationEncoder, type TrainOn } from '../../lib/tokenizer/conversation-encoder.js';
import { TemplateSpanError } from '../../lib/tokenizer/span-render.js';
import type { TextTokenizer } from '../../lib/tokenizer/text-tokenizer.js';
import { chatmlSpmTokenizer, llama3Tokenizer, spmTokenizer } from '../fixtures/tokenizers/fixture-tokenizers.js';
import { loadLlamaCppVocabs, type LlamaCppVocab, type LlamaCppVocabs } from '../fixtures/tokenizers/llama-cpp-vocab.js';
import { llama3Files } from '../fixtures/tokenizers/real-tokenizers.js';

const mapping = resolveFieldMapping();
let llama: LlamaCppVocabs;

beforeAll(async () => {
  llama = await loadLlamaCppVocabs();
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
});

/** [start, end) token indices of the contiguous trained runs. */
function runsOf(mask: Uint8Array): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let start = -1;
  for (let i = 0; i <= mask.length; i++) {
    const on = i < mask.length && mask[i] === 1;
    if (on && start < 0) start = i;
    if (!on && start >= 0) {
      runs.push([start, i]);
      start = -1;
    }
  }
  return runs;
}

/** Trained runs as text by our own per-token bytes. */
function trainedRuns(tok: TextTokenizer, ids: Int32Array, mask: Uint8Array): string[] {
  return runsOf(mask).map(([a, b]) => tok.surfaceText(ids, a, b));
}

/**
 * Trained runs as text by llama.cpp: the detokenized prefix up to the run's end minus the one up to
 * its start, so detokenizer rules for a sequence start (a dropped leading space) do not apply.
 */
function llamaRuns(vocab: LlamaCppVocab, ids: Int32Array, mask: Uint8Array): string[] {
  return runsOf(mask).map(([a, b]) => {
    const before = vocab.detokenize(ids.subarray(0, a));
    const through = vocab.detokenize(ids.subarray(0, b));
    expect(through.startsWith(before)).toBe(true);
    return through.slice(before.length);
  });
}

const SYSTEM = 'You are ICEBURG, a research assistant.';
const Q1 = 'What drives ocean heat content?';
const A1 = 'Mostly greenhouse forcing; the oceans absorb about 90% of the excess heat.';
const Q2 = 'Cite a dataset, please 🙏';
const A2 = 'Argo floats (since 2000) — see "Argo float data", doi:10.17882/42182.';

/**
 * Answers whose first characters BPE merges with what a template writes before them (`]`, `\n`),
 * or that SentencePiece cannot keep apart from a space. None has a space before `.,!?'`: llama.cpp's
 * Llama 3 detokenizer "cleans" those, which would be its rewrite, not our mask.
 */
const TRICKY = [
  '(aside) then the answer.',
  '{"a": 1, "b": [true, null]}',
  '[link](https://example.com/x) first',
  '/path/to/file.txt',
  ': colon first',
  '. dot first',
  ', comma first',
  '<tag>x</tag>',
  '"quoted" start',
  '🤖 robot first, then 👩‍💻 and 🧊',
  '▁leading metaspace',
  'mid▁word ▁ spaced and trailing▁',
  '日本語の答え',
  'ends with punctuation ](',
];
const ANSWER_PAIRS: Array<[string, string]> = [[A1, A2], ...TRICKY.map((a, i): [string, string] => [a, TRICKY[(i + 1) % TRICKY.length]!])];

type ChatFormat = Exclude<RecordFormat, 'iceburg-quality' | 'text'>;
const FORMATS: ChatFormat[] = ['chatml', 'sharegpt', 'alpaca', 'completion', 'iceburg-conversations', 'iceburg-reasoning', 'iceburg-agent'];

/** One raw line per format carrying the given answers, and the answers it trains. */
function rawLine(format: ChatFormat, a1: string, a2: string): { raw: Record<string, unknown>; answers: string[] } {
  switch (format) {
    case 'chatml':
      return { raw: { messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: Q1 }, { role: 'assistant', content: a1 }, { role: 'user', content: Q2 }, { role: 'assistant', content: a2 }] }, answers: [a1, a2] };
    case 'sharegpt':
      return { raw: { conversations: [{ from: 'human', value: Q1 }, { from: 'gpt', value: a1 }, { from: 'human', value: Q2 }, { from: 'gpt', value: a2 }] }, answers: [a1, a2] };
    case 'alpaca':
      return { raw: { instruction: Q1, input: 'Be brief.', output: a1, system: SYSTEM }, answers: [a1] };
    case 'completion':
      return { raw: { prompt: Q1, completion: a1 }, answers: [a1] };
    case 'iceburg-conversations':
      return { raw: { messages: [{ role: 'user', content: Q1 }, { role: 'assistant', content: a1 }], metadata: { quality_score: 0.9, timestamp: '2025-01-01T00:00:00' } }, answers: [a1] };
    case 'iceburg-reasoning':
      return { raw: { reasoning_chain: [{ step: 1, agent: 'surveyor', thinking: 'look up', action: 'search', output: {} }], final_response: a2, metadata: { query: Q2, timestamp: 't' } }, answers: [a2] };
    case 'iceburg-agent':
      return { raw: { agent_name: 'heat_agent', generated_code: a1, validation_result: { valid: true }, metadata: {} }, answers: [a1] };
  }
}

function parse(format: RecordFormat, raw: Record<string, unknown>): RecordBody {
  const parsed = FORMAT_PARSERS[format].parse(raw, { mapping, reasoning: 'omit' });
  if (parsed.kind !== 'record') throw new Error('expected a record');
  return parsed.body;
}

interface TemplateCase {
  template: BuiltinTemplateName;
  vocab: 'spm' | 'byteLevel';
  tokenizer: () => TextTokenizer;
  /** The end-of-turn token trained after each answer ('' when the vocabulary has none for this template). */
  end: string;
}

// Each built-in template with its usual vocabulary, and the others with Llama 3's byte-level BPE, whose
// pre-tokenizer glues punctuation differently. ChatML over Llama 3 has no `<|im_end|>` token, so
// its end marker is plain text that nothing trains.
const CASES: TemplateCase[] = [
  { template: 'chatml', vocab: 'spm', tokenizer: chatmlSpmTokenizer, end: '<|im_end|>' },
  { template: 'mistral', vocab: 'spm', tokenizer: spmTokenizer, end: '</s>' },
  { template: 'llama-3', vocab: 'byteLevel', tokenizer: llama3Tokenizer, end: '<|eot_id|>' },
  { template: 'alpaca', vocab: 'spm', tokenizer: spmTokenizer, end: '</s>' },
  { template: 'chatml', vocab: 'byteLevel', tokenizer: llama3Tokenizer, end: '' },
  { template: 'mistral', vocab: 'byteLevel', tokenizer: llama3Tokenizer, end: '<|end_of_text|>' },
  { template: 'alpaca', vocab: 'byteLevel', tokenizer: llama3Tokenizer, end: '<|end_of_text|>' },
];

function specialsOf(tok: TextTokenizer): { bos_token?: string; eos_token?: string } {
  return { ...(tok.bosToken ? { bos_token: tok.bosToken } : {}), ...(tok.eosToken ? { eos_token: tok.eosToken } : {}) };
}

function encoderFor(c: TemplateCase): ConversationEncoder {
  const tok = c.tokenizer();
  return new ConversationEncoder(tok, new ChatTemplate(c.template, BUILTIN_TEMPLATES[c.template], specialsOf(tok)));
}

/** What the vocabulary can represent: SentencePiece reads `▁` in text as a space. */
function representable(c: TemplateCase, text: string): string {
  return c.vocab === 'spm' ? text.replaceAll('\u2581', ' ') : text;
}

describe.each(CASES)('template $template, $vocab vocabulary', (c) => {
  const enc = encoderFor(c);
  const tok = c.tokenizer();

  it.each(FORMATS)('format %s: trained spans are the answers plus end tokens, nothing else', (format) => {
    for (const [a1, a2] of ANSWER_PAIRS) {
      const { raw, answers } = rawLine(format, a1, a2);
      const { ids, mask } = enc.encode(parse(format, raw));
      const expected = answers.map((a) => representable(c, a) + c.end);
      expect([a1, llamaRuns(llama[c.vocab], ids, mask)]).toEqual([a1, expected]);
      expect([a1, trainedRuns(tok, ids, mask)]).toEqual([a1, expected]);
      // Exactly one BOS (from the template's text or added as an id), never trained.
      const bosCount = Array.from(ids).filter((id) => id === tok.bosId).length;
      expect(bosCount).toBe(tok.addBos || enc.template.source.includes('bos_token') ? 1 : 0);
      expect(mask[0]).toBe(0);
    }
  });

  it('the ids before the first answer are the inference prompt\'s ids (llama.cpp), whatever the answer', () => {
    // Later turns are not checked: at inference earlier answers are re-tokenized as prompt text, where
    // BPE may merge them with the template (boundary-encode.ts explains the trade-off).
    for (const [a1, a2] of ANSWER_PAIRS) {
      const body = parse('chatml', rawLine('chatml', a1, a2).raw) as { kind: 'chat'; messages: ChatMessage[] };
      const { ids, mask } = enc.encode(body);
      const prompt = enc.template.render(body.messages.slice(0, body.messages.findIndex((m) => m.role === 'assistant')), true);
      const answerStart = runsOf(mask)[0]![0];
      const bos = ids[0] === tok.bosId && !(tok.bosToken && prompt.startsWith(tok.bosToken)) ? [tok.bosId] : [];
      expect([a1, Array.from(ids.subarray(0, answerStart))]).toEqual([a1, [...bos, ...llama[c.vocab].tokenize(prompt)]]);
    }
  });

  it('answers that start with whitespace keep it (the templates that do not trim)', () => {
    for (const answer of ['  two spaces first', '\n\nnewlines first', '\ttab first', ' ▁ space then metaspace']) {
      const body: RecordBody = { kind: 'chat', messages: [{ role: 'user', content: Q1 }, { role: 'assistant', content: answer }] };
      if (c.template === 'llama-3') {
        // Its template trims content, so the content span cannot be located: the record is rejected.
        expect(() => enc.encode(body)).toThrow(TemplateSpanError);
        continue;
      }
      const { ids, mask } = enc.encode(body);
      expect([answer, llamaRuns(llama[c.vocab], ids, mask)]).toEqual([answer, [representable(c, answer) + c.end]]);
    }
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
        { role: 'assistant', content: '(excluded) answer', weight: 0 },
        { role: 'user', content: Q2 },
        { role: 'assistant', content: A2 },
      ],
    };
    const run = (b: RecordBody, trainOn: TrainOn) => {
      const { ids, mask } = enc.encode(b, trainOn);
      return llamaRuns(llama[c.vocab], ids, mask);
    };
    expect(run(body, 'assistant')).toEqual([A2 + c.end]);
    const both: RecordBody = { kind: 'chat', messages: (body as { messages: ChatMessage[] }).messages.map(({ role, content }) => ({ role, content })) };
    expect(run(both, 'last-assistant')).toEqual([A2 + c.end]);
    // Everything after BOS is trained except the weight-0 answer and its end token, to the byte.
    const { ids, mask } = enc.encode(body, 'all');
    const full = llama[c.vocab].detokenize(ids);
    const flipped = mask.map((m) => 1 - m);
    flipped[0] = 0; // BOS is never a prediction target, whatever its mask says
    const untrained = runsOf(flipped).map(([a, b]) => {
      const before = llama[c.vocab].detokenize(ids.subarray(0, a));
      return llama[c.vocab].detokenize(ids.subarray(0, b)).slice(before.length);
    });
    expect(untrained).toEqual([`(excluded) answer${c.end}`]);
    expect(full).toContain(Q1);
  });
});

describe('model templates', () => {
  it("Llama 3's own template (which trims content) gives the same exact spans", () => {
    const files = llama3Files();
    const tok = llama3Tokenizer();
    const template = new ChatTemplate('llama3 tokenizer_config', files.config.chat_template as string, { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' });
    const enc = new ConversationEncoder(tok, template);
    const raw = rawLine('chatml', A1, A2).raw;
    const { ids, mask } = enc.encode(parse('chatml', raw));
    expect(llamaRuns(llama.byteLevel, ids, mask)).toEqual([`${A1}<|eot_id|>`, `${A2}<|eot_id|>`]);
    // No token straddles a span edge here, so the ids are a plain encode of the rendered text.
    expect(Array.from(ids)).toEqual(Array.from(tok.encode(template.render(raw.messages as ChatMessage[]))));
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

  it('mistral: an answer BPE would merge with `[/INST]` is split off, and only there', () => {
    const enc = encoderFor(CASES[1]!);
    const tok = spmTokenizer();
    const { ids, text } = enc.encode({ kind: 'chat', messages: [{ role: 'user', content: Q1 }, { role: 'assistant', content: '(aside)' }] });
    const plain = Array.from(tok.encode(text));
    // A plain encode has one token for `](`; ours ends the prompt at `]` and starts the answer at `(`.
    expect(plain.map((id) => tok.surfaceText([id]))).toContain('](');
    const pieces = Array.from(ids, (id) => tok.surfaceText([id]));
    expect(pieces).not.toContain('](');
    const cut = pieces.indexOf(']');
    expect(Array.from(ids.subarray(0, cut + 1))).toEqual(plain.slice(0, cut + 1));
    expect(llama.spm.detokenize(ids)).toBe(llama.spm.detokenize(plain));
  });
});
