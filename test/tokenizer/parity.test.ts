/**
 * Token ids from our tokenizers (HF tokenizer.json, and GGUF vocabularies converted by
 * lib/tokenizer/gguf-vocab.ts) must equal llama.cpp's (through node-llama-cpp) on the same vocabulary:
 * a separate C++ implementation, so agreement is evidence, not tautology.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGguf } from '../../lib/gguf/reader.js';
import { tokenizerFromGguf } from '../../lib/tokenizer/gguf-vocab.js';
import { TextTokenizer } from '../../lib/tokenizer/text-tokenizer.js';
import { chatmlSpmTokenizer, llama3Tokenizer } from '../fixtures/tokenizers/fixture-tokenizers.js';
import { byteLevelGguf, sentencePieceGguf } from '../fixtures/tokenizers/hf-to-gguf.js';
import { chatmlLlama2Files, llama3Files } from '../fixtures/tokenizers/real-tokenizers.js';
import { writeVocabGguf } from '../fixtures/tokenizers/vocab-gguf.js';

export const PARITY_TEXTS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  ' leading space',
  'two  spaces and   three',
  'trailing spaces   ',
  'tabs\tand\nnewlines\n\n\nand\r\nCRLF',
  "I'm sure you'll see they've done it, haven't they?",
  'Numbers: 1 12 123 1234 12345 3.14159 -42 1e10',
  'Ünïcödé àccents, ß, æøå, Ελληνικά, русский',
  '日本語のテキストと中文文本',
  'Emoji 🤖🧊🚀 and ZWJ 👩‍💻 family 👨‍👩‍👧',
  'def f(x):\n    return {"a": [1, 2, 3]}  # comment',
  'const x = arr.map((v) => v * 2).filter(Boolean);',
  'URL https://example.com/path?q=1&r=two#frag',
  'Markdown **bold** _it_ `code` > quote\n- item\n- item',
  'ICEBURG multi-agent research: Surveyor → Dissident → Synthesist → Oracle.',
  '<|im_start|>system\nYou are Dolphin.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n',
  'rare bytes \u0001\u0002 and \u00a0 nbsp',
  '!!!???...,,,;;;',
  'a',
];

let dir: string;
let llamaSpm: LlamaModel;
let llamaByte: LlamaModel;
let ggufSpm: TextTokenizer;
let ggufByte: TextTokenizer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mlxq-parity-'));
  const spmPath = join(dir, 'spm.gguf');
  const bytePath = join(dir, 'byte.gguf');
  writeVocabGguf(spmPath, sentencePieceGguf(chatmlLlama2Files()));
  writeVocabGguf(bytePath, byteLevelGguf(llama3Files()));
  // A vocab-only file has no tensors; llama.cpp logs that as an error but keeps the vocabulary.
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.disabled });
  llamaSpm = await llama.loadModel({ modelPath: spmPath, vocabOnly: true });
  llamaByte = await llama.loadModel({ modelPath: bytePath, vocabOnly: true });
  const fromGguf = async (path: string) => {
    const { tokenizer, config } = tokenizerFromGguf(await readGguf(path));
    return new TextTokenizer({ tokenizer, config, source: path });
  };
  ggufSpm = await fromGguf(spmPath);
  ggufByte = await fromGguf(bytePath);
}, 120_000);

afterAll(async () => {
  await llamaSpm?.dispose();
  await llamaByte?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const llamaIds = (m: LlamaModel, text: string) => Array.from(m.tokenize(text, true), Number);

describe('token ids equal llama.cpp on the same vocabulary', () => {
  it('SentencePiece BPE from tokenizer.json', () => {
    const ours = chatmlSpmTokenizer();
    for (const text of PARITY_TEXTS) expect([text, Array.from(ours.encode(text))]).toEqual([text, llamaIds(llamaSpm, text)]);
  });

  it('SentencePiece BPE from a GGUF vocabulary (tokenizer.ggml.model = llama)', () => {
    for (const text of PARITY_TEXTS) expect([text, Array.from(ggufSpm.encode(text))]).toEqual([text, llamaIds(llamaSpm, text)]);
  });

  it('byte-level BPE from tokenizer.json', () => {
    const ours = llama3Tokenizer();
    for (const text of PARITY_TEXTS) expect([text, Array.from(ours.encode(text))]).toEqual([text, llamaIds(llamaByte, text)]);
  });

  it('byte-level BPE from a GGUF vocabulary (tokenizer.ggml.model = gpt2, pre = llama-bpe)', () => {
    for (const text of PARITY_TEXTS) expect([text, Array.from(ggufByte.encode(text))]).toEqual([text, llamaIds(llamaByte, text)]);
  });

  it('GGUF special-token metadata becomes BOS/EOS/add_bos', () => {
    expect([ggufSpm.bosId, ggufSpm.eosId, ggufSpm.addBos, ggufSpm.vocabSize]).toEqual([1, 32000, true, 32002]);
    expect([ggufByte.bosId, ggufByte.eosId, ggufByte.vocabSize]).toEqual([128000, 128001, 128256]);
  });
});
