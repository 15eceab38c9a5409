/**
 * fuse from a GGUF base writes tokenizer.json and tokenizer_config.json built from the GGUF's
 * vocabulary, so the fused folder tokenizes as llama.cpp does on the GGUF and carries the chat
 * template, special tokens and add_bos.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFusedModel } from '../../lib/model/fuse.js';
import { loadModel } from '../../lib/model/load-model.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { CHATML, withChatmlVocab } from '../export/gguf-model-fixtures.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const TEXTS = [
  'Hello world, this is a test.',
  'Café déjà vu: naïve façade',
  'emoji 🦙🚀 and 漢字',
  '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n',
  '  two spaces\n\nand lines',
];

describe('fuse from a GGUF base writes its tokenizer files', () => {
  let tiny: TinyModel;
  let dir: string;
  let gguf: string;
  let fused: string;
  beforeAll(async () => {
    dir = tempDir('fuse-tokenizer-');
    tiny = await makeTinyModel({ layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64, vocab: 32002, seed: 5, dir: join(dir, 'tiny') });
    gguf = join(dir, 'chatml.gguf');
    await withChatmlVocab(tiny.ggufPath, gguf);
    const model = await loadModel(gguf, { quantization: 'none' });
    fused = join(dir, 'fused');
    try {
      await writeFusedModel(model, fused, { dtype: 'float32' });
    } finally {
      model.dispose();
    }
  }, 120_000);
  afterAll(async () => tiny?.cleanup());

  it('writes tokenizer.json and tokenizer_config.json with the template, special tokens and add_bos', async () => {
    expect((await readdir(fused)).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const config = JSON.parse(await readFile(join(fused, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ bos_token: '<s>', eos_token: '<|im_end|>', unk_token: '<unk>', add_bos_token: true, add_eos_token: false, chat_template: CHATML });
  });

  it("the fused folder's tokenizer gives llama.cpp's ids on the GGUF for ASCII, accents, emoji and ChatML tokens", async () => {
    const { tokenizer, template } = await loadModelTokenizer(fused);
    expect(template.source).toBe(CHATML);
    expect(tokenizer.bosId).toBe(1);
    expect(tokenizer.eosId).toBe(32000);
    const oracle = await openLlamaCppOracle(gguf);
    try {
      for (const text of TEXTS) expect(Array.from(tokenizer.encode(text)), text).toEqual(oracle.tokenize(text, { special: true }));
      const rendered = template.render([{ role: 'user', content: 'Grüße 👋' }], true);
      expect(Array.from(tokenizer.encode(rendered))).toEqual(oracle.tokenize(rendered, { special: true }));
    } finally {
      await oracle.dispose();
    }
  });
});
