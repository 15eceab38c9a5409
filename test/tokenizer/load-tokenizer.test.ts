/**
 * `--model` resolution: a .gguf file (tokenizer + template from its metadata), an Ollama name (GGUF
 * blob through the manifest, template from the GGUF or mapped from Ollama's Go template), an HF
 * folder, and `--template` overrides.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, readGgufFileInfo, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { sentencePieceGguf } from '../fixtures/tokenizers/hf-to-gguf.js';
import { chatmlLlama2Files, llama3Files } from '../fixtures/tokenizers/real-tokenizers.js';
import { encodeVocabGguf } from '../fixtures/tokenizers/vocab-gguf.js';
import { BUILTIN_TEMPLATES } from '../../lib/tokenizer/builtin-templates.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-load-');
const withTemplate = join(dir, 'dolphin.gguf');
const noTemplate = join(dir, 'bare.gguf');
const store = join(dir, 'ollama');

function addBlob(bytes: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(bytes).digest('hex');
  mkdirSync(join(store, 'blobs'), { recursive: true });
  writeFileSync(join(store, 'blobs', `sha256-${hex}`), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

const CHATML_TURN = '<|im_start|>user\nHi<|im_end|>';
let llamaCpp: LlamaModel;

/** llama.cpp's ids for text, special tokens parsed, no BOS: what our encode() must give. */
const llamaCppIds = (model: LlamaModel, text: string): number[] => Array.from(model.tokenize(text, true), Number);

beforeAll(async () => {
  writeFileSync(withTemplate, encodeVocabGguf(sentencePieceGguf(chatmlLlama2Files(), BUILTIN_TEMPLATES.chatml)));
  const bare = encodeVocabGguf(sentencePieceGguf(chatmlLlama2Files()));
  writeFileSync(noTemplate, bare);
  const model = addBlob(bare);
  const template = addBlob(Buffer.from('{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n'));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', ...model },
      { mediaType: 'application/vnd.ollama.image.template', ...template },
    ],
  };
  const mdir = join(store, 'manifests', 'registry.ollama.ai', 'library', 'dolphin-mistral');
  mkdirSync(mdir, { recursive: true });
  writeFileSync(join(mdir, '7b'), JSON.stringify(manifest));
  const hf = join(dir, 'hf');
  mkdirSync(hf);
  const files = llama3Files();
  writeFileSync(join(hf, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  writeFileSync(join(hf, 'tokenizer_config.json'), JSON.stringify(files.config));
  // A vocab-only file has no tensors; llama.cpp logs that as an error but keeps the vocabulary.
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.disabled });
  llamaCpp = await llama.loadModel({ modelPath: withTemplate, vocabOnly: true });
}, 120_000);
afterAll(async () => {
  await llamaCpp?.dispose();
});

describe('loadModelTokenizer', () => {
  it('a .gguf file supplies vocabulary, special tokens and tokenizer.chat_template', async () => {
    const m = await loadModelTokenizer(withTemplate);
    expect(m.kind).toBe('gguf');
    expect(m.template.source).toBe(BUILTIN_TEMPLATES.chatml);
    // Special tokens and ids as llama.cpp reads the same file.
    const eos = llamaCpp.tokens.eos!;
    expect([m.tokenizer.bosId, m.tokenizer.eosId, m.tokenizer.eosToken]).toEqual([llamaCpp.tokens.bos, eos, llamaCpp.detokenize([eos], true)]);
    expect(m.tokenizer.eosToken).toBe('<|im_end|>');
    const ids = llamaCppIds(llamaCpp, CHATML_TURN);
    // <|im_start|>, ▁user, <0x0A>, Hi, <|im_end|>: special tokens and a byte-fallback newline.
    expect(ids).toHaveLength(5);
    expect(Array.from(m.tokenizer.encode(CHATML_TURN))).toEqual(ids);
  });

  it('an Ollama name resolves to its GGUF blob; a ChatML Go template maps to the chatml built-in', async () => {
    const m = await loadModelTokenizer('dolphin-mistral:7b', { ollamaModelsDir: store });
    expect(m.kind).toBe('ollama');
    expect(m.template.name).toBe('chatml');
    // The blob the manifest names is the vocabulary read: same size (by node-llama-cpp's GGUF
    // parser) and the same ids as llama.cpp on that blob.
    const blob = await readGgufFileInfo(m.vocabPath, { ignoreKeys: [] });
    expect(m.tokenizer.vocabSize).toBe(blob.metadata.tokenizer.ggml.tokens.length);
    expect(m.tokenizer.vocabSize).toBe(32002);
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.disabled });
    const fromBlob = await llama.loadModel({ modelPath: m.vocabPath, vocabOnly: true });
    try {
      expect(Array.from(m.tokenizer.encode(CHATML_TURN))).toEqual(llamaCppIds(fromBlob, CHATML_TURN));
    } finally {
      await fromBlob.dispose();
    }
  });

  it('a GGUF without a template needs --template, and says so', async () => {
    await expect(loadModelTokenizer(noTemplate)).rejects.toThrow(/has no chat template; pass --template/);
    const m = await loadModelTokenizer(noTemplate, { template: 'mistral' });
    expect(m.template.name).toBe('mistral');
  });

  it('an HF folder uses tokenizer_config.json\'s chat_template; a .jinja file overrides it', async () => {
    const hf = join(dir, 'hf');
    const m = await loadModelTokenizer(hf);
    expect(m.kind).toBe('hf');
    expect(m.template.source).toBe(JSON.parse(readFileSync(join(hf, 'tokenizer_config.json'), 'utf8')).chat_template);
    const custom = join(dir, 'custom.jinja');
    writeFileSync(custom, '{% for m in messages %}{{ m.content }}{% endfor %}');
    expect((await loadModelTokenizer(hf, { template: custom })).template.name).toBe(custom);
    await expect(loadModelTokenizer(hf, { template: 'nope' })).rejects.toThrow(/not a built-in template/);
  });

  it('unsupported GGUF vocabularies fail naming the key', async () => {
    const entries = sentencePieceGguf(chatmlLlama2Files());
    entries['tokenizer.ggml.model'] = { type: 'str', value: 'bert' };
    const path = join(dir, 'bert.gguf');
    writeFileSync(path, encodeVocabGguf(entries));
    await expect(loadModelTokenizer(path, { template: 'chatml' })).rejects.toThrow(/tokenizer\.ggml\.model = "bert" is not supported/);
  });
});

describe('loadModelTokenizer errors', () => {
  it('a missing path is reported as a path, not looked up in Ollama', async () => {
    await expect(loadModelTokenizer('./nope/model.gguf')).rejects.toThrow('./nope/model.gguf: no such file or folder');
  });
});
