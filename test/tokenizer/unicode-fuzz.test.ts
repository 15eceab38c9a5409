/**
 * Random text over a pool that mixes `▁` (U+2581), whitespace runs, punctuation, emoji with ZWJ and
 * variation selectors, combining marks, CJK, RTL scripts, control and zero-width characters, and
 * added-token text: every string must encode with offsets (no OffsetAlignmentError), and the mask
 * must train exactly the answer plus its end token. Before `▁` was aligned, about one in seven
 * `▁`-containing contents aborted prepare with a SentencePiece vocabulary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_TEMPLATES, type BuiltinTemplateName } from '../../lib/tokenizer/builtin-templates.js';
import { ChatTemplate } from '../../lib/tokenizer/chat-template.js';
import { ConversationEncoder } from '../../lib/tokenizer/conversation-encoder.js';
import type { TextTokenizer } from '../../lib/tokenizer/text-tokenizer.js';
import { createRng, type Rng } from '../fixtures/rng.js';
import { chatmlSpmTokenizer, llama3Tokenizer, spmTokenizer } from '../fixtures/tokenizers/fixture-tokenizers.js';
import { loadLlamaCppVocabs, type LlamaCppVocabs } from '../fixtures/tokenizers/llama-cpp-vocab.js';

const ATOMS = [
  'word', 'Ocean', 'heat', 'x', '42', '3.14',
  ' ', '  ', '\n', '\n\n', '\t', '\r\n',
  '\u2581', '\u2581\u2581', '\u2581x', 'a\u2581b',
  '(', ')', '[', ']', '{', '}', '<', '>', '/', ':', ';', '.', ',', '!', '?', '"', "'", '#', '*', '_', '-', '|', '\\', '`', '~', '%',
  '🤖', '👩‍💻', '🇺🇳', '❤️', '🧊',
  'e\u0301', 'n\u0303', '日本語', '한국어', 'مرحبا', 'שלום', 'नमस्ते', 'สวัสดี',
  '\u0001', '\u001f', '\u00a0', '\u200b', '\u2028', '\ufeff',
  '<|im_end|>', '</s>', '<s>',
];

function randomText(rng: Rng): string {
  let s = '';
  const n = rng.int(1, 14);
  for (let i = 0; i < n; i++) s += ATOMS[rng.int(0, ATOMS.length - 1)];
  // Contents reach the encoder trimmed (every format parser trims), and never empty.
  return s.trim() || 'x';
}

let llama: LlamaCppVocabs;
beforeAll(async () => {
  llama = await loadLlamaCppVocabs();
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
});

const TOKENIZERS: Array<[string, () => TextTokenizer]> = [
  ['spm', spmTokenizer],
  ['chatml-spm', chatmlSpmTokenizer],
  ['llama3', llama3Tokenizer],
];

describe('offsets over random unicode', () => {
  it.each(TOKENIZERS)('%s: every text aligns, and the tokens tile its bytes', (_name, make) => {
    const tok = make();
    const rng = createRng(11);
    for (let i = 0; i < 500; i++) {
      const text = randomText(rng);
      const bytes = new TextEncoder().encode(text);
      const { ids, starts, ends } = tok.encodeWithOffsets(text);
      expect(ids.length).toBeGreaterThan(0);
      expect([text, starts[0], ends[ids.length - 1]]).toEqual([text, 0, bytes.length]);
      for (let t = 1; t < ids.length; t++) expect([text, t, starts[t]]).toEqual([text, t, ends[t - 1]]);
    }
  });
});

interface Case {
  template: BuiltinTemplateName;
  tokenizer: () => TextTokenizer;
  end: string;
  spm: boolean;
}

const CASES: Case[] = [
  { template: 'chatml', tokenizer: chatmlSpmTokenizer, end: '<|im_end|>', spm: true },
  { template: 'mistral', tokenizer: spmTokenizer, end: '</s>', spm: true },
  { template: 'alpaca', tokenizer: spmTokenizer, end: '</s>', spm: true },
  { template: 'llama-3', tokenizer: llama3Tokenizer, end: '<|eot_id|>', spm: false },
];

/**
 * The text a SentencePiece vocabulary gives back for `text`: `▁` reads as a space, and added-token
 * text in the content (`</s>`) becomes that token, after which the tokenizer starts a new section
 * with its `▁` prefix (llama.cpp does the same), so a space appears when more text follows.
 */
function spmText(tok: TextTokenizer, text: string): string {
  const added = tok.spec.tokenizer.added_tokens.map((t) => t.content.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  return text.replaceAll('\u2581', ' ').replace(new RegExp(`(${added.join('|')})(?=.)(?!${added.join('|')})`, 'gsu'), '$1 ');
}

describe('masks over random unicode', () => {
  it.each(CASES)('$template: the trained run decodes to the answer plus $end', (c) => {
    const tok = c.tokenizer();
    const specials = { ...(tok.bosToken ? { bos_token: tok.bosToken } : {}), ...(tok.eosToken ? { eos_token: tok.eosToken } : {}) };
    const enc = new ConversationEncoder(tok, new ChatTemplate(c.template, BUILTIN_TEMPLATES[c.template], specials));
    // SentencePiece: llama.cpp's detokenizer. Llama 3: the HF library's decoder, because llama.cpp's
    // llama-bpe detokenizer "cleans" spaces before punctuation, which random text is full of.
    const decode = c.spm ? (ids: Int32Array) => llama.spm.detokenize(ids) : (ids: Int32Array) => tok.decode(ids);
    const rng = createRng(c.template.length * 7919);
    let withMetaspace = 0;
    for (let i = 0; i < 300; i++) {
      const question = randomText(rng);
      const answer = randomText(rng);
      if (answer.includes('\u2581')) withMetaspace++;
      const { ids, mask } = enc.encode({ kind: 'chat', messages: [{ role: 'user', content: question }, { role: 'assistant', content: answer }] });
      const first = mask.indexOf(1);
      const last = mask.lastIndexOf(1) + 1;
      expect(mask.subarray(first, last).every((m) => m === 1)).toBe(true);
      const before = decode(ids.subarray(0, first));
      const through = decode(ids.subarray(0, last));
      const expected = (c.spm ? spmText(tok, answer) : answer) + c.end;
      expect([answer, through.startsWith(before), through.slice(before.length)]).toEqual([answer, true, expected]);
    }
    expect(withMetaspace).toBeGreaterThan(30);
  });
});
