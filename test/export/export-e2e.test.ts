/**
 * End to end: a short real training run exported by exportModel(). The fused Q4_K_M file equals,
 * tensor by tensor (type and bytes), what llama.cpp's llama_model_quantize writes from our fused
 * F32 export; llama.cpp runs both, and its greedy tokens on the F32 file are our adapted model's.
 * The adapter GGUF with a Modelfile is registered with a (fake, local) Ollama as NAME-v1 on a
 * base that Ollama holds; a server that refuses adapters gets the fused Q4_K_M model instead.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel, fusedPathFor, OllamaRefusedAdapterExportError } from '../../lib/export/export-model.js';
import { optionalInteger } from '../../lib/gguf/metadata.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes } from '../../lib/gguf/tensor-data.js';
import { generate } from '../../lib/model/generate.js';
import { loadModel } from '../../lib/model/load-model.js';
import { FakeOllama } from '../fixtures/fake-ollama.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { llamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { tempDir } from '../helpers/temp-dir.js';
import { makeExportRun, type ExportRun } from './export-run-fixture.js';

let fx: ExportRun;
let dir: string;

beforeAll(async () => {
  fx = await makeExportRun();
  dir = tempDir('export-e2e-');
}, 300_000);

async function sha256(path: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(path)).digest('hex')}`;
}

describe('export of a training run', () => {
  it('--gguf q4_k_m equals llama_model_quantize of our --gguf f32, tensor by tensor; llama.cpp runs it', async (ctx) => {
    const oracle = await llamaQuantizeOracle();
    if (!oracle) return ctx.skip('no C compiler for the llama.cpp quantize helper');
    const f32 = join(dir, 'fused-f32.gguf');
    const q4 = join(dir, 'fused-q4_k_m.gguf');
    const reference = join(dir, 'llama-q4_k_m.gguf');
    await exportModel({ run: fx.runDir, gguf: 'f32', out: f32 });
    await exportModel({ run: fx.runDir, gguf: 'q4_k_m', out: q4, threads: 2 });
    await oracle.quantizeFile(f32, reference, 'q4_k_m', 2);
    const [ours, theirs] = await Promise.all([readGguf(q4), readGguf(reference)]);
    // llama_model_quantize orders tensors its own way; the comparison is by name.
    const byName = (f: typeof ours) => new Map(f.tensors.map((t) => [t.name, t]));
    const [mine, llamaTensors] = [byName(ours), byName(theirs)];
    expect([...mine.keys()].sort()).toEqual([...llamaTensors.keys()].sort());
    expect([...mine.values()].map((t) => [t.name, t.typeName, t.shape])).toEqual([...mine.keys()].map((n) => [n, llamaTensors.get(n)!.typeName, llamaTensors.get(n)!.shape]));
    // Real K-quant blocks, not only fallbacks: the widths are multiples of 256.
    const types = new Set(ours.tensors.map((t) => t.typeName));
    expect(types).toEqual(new Set(['Q4_K', 'Q6_K', 'F32']));
    const differing: string[] = [];
    for (const t of ours.tensors) {
      const [a, b] = await Promise.all([readTensorBytes(ours, t), readTensorBytes(theirs, llamaTensors.get(t.name)!)]);
      if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) differing.push(t.name);
    }
    expect(differing).toEqual([]);
    expect(optionalInteger(ours, 'general.file_type')).toBe(15);

    const llama = await openLlamaCppOracle(q4, { contextSize: 64 });
    try {
      const prompt = llama.tokenize('Tell me one fact about glaciers', { addBos: true });
      expect((await llama.greedy(prompt, 8)).length).toBeGreaterThan(0);
    } finally {
      await llama.dispose();
    }
  }, 300_000);

  it("the fused F32 export is the run's final adapter merged: llama.cpp's greedy tokens are our adapted model's", async () => {
    const f32 = join(dir, 'fused-f32-greedy.gguf');
    await exportModel({ run: fx.runDir, gguf: 'f32', out: f32 });
    const model = await loadModel(fx.modelDir, { adapter: join(fx.runDir, 'adapter'), quantization: 'none', computeDtype: 'float32' });
    const llama = await openLlamaCppOracle(f32, { contextSize: 64 });
    try {
      for (const text of ['Tell me one fact about glaciers (3).', 'sea ice']) {
        const prompt = llama.tokenize(text, { addBos: true });
        const theirs = await llama.greedy(prompt, 12);
        const ours = await generate(model.native, prompt, { maxTokens: 12, stopTokens: llama.eos === null ? [] : [llama.eos] });
        expect(theirs.filter((t) => t !== llama.eos)).toEqual(ours.tokens);
      }
    } finally {
      await llama.dispose();
      model.dispose();
    }
  }, 300_000);
});

describe('export to Ollama', () => {
  let store: string;
  let fake: FakeOllama | undefined;

  /** The plain base as an F32 GGUF in a local Ollama store, named tiny-base. */
  beforeAll(async () => {
    const baseGguf = join(dir, 'base-f32.gguf');
    await exportModel({ model: fx.modelDir, gguf: 'f32', out: baseGguf });
    store = join(dir, 'ollama-models');
    const digest = await sha256(baseGguf);
    await mkdir(join(store, 'blobs'), { recursive: true });
    await copyFile(baseGguf, join(store, 'blobs', digest.replace(':', '-')));
    const manifest = join(store, 'manifests', 'registry.ollama.ai', 'library', 'tiny-base', 'latest');
    await mkdir(join(manifest, '..'), { recursive: true });
    await writeFile(
      manifest,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 },
        layers: [{ mediaType: 'application/vnd.ollama.image.model', digest, size: (await stat(baseGguf)).size }],
      }),
    );
  }, 300_000);

  afterAll(async () => fake?.close());

  it('--gguf adapter --modelfile --ollama NAME-v registers NAME-v1, then NAME-v2, on the base Ollama holds', async () => {
    fake = await FakeOllama.start({ models: ['tiny-base'] });
    const out = join(dir, 'ollama', 'adapter.gguf');
    const options = { run: fx.runDir, model: 'tiny-base', gguf: 'adapter', out, modelfile: true, ollama: 'iceburg-tiny-v', ollamaHost: fake.host, ollamaModelsDir: store } as const;
    const statuses: string[] = [];
    const r = await exportModel({ ...options, onProgress: (p) => p.phase === 'ollama' && statuses.push(p.status) });
    expect(r.ollama).toMatchObject({ model: 'iceburg-tiny-v1', version: 1, kind: 'adapter', digest: await sha256(out) });
    expect(statuses.at(-1)).toBe('success');
    const created = fake.models.get('iceburg-tiny-v1:latest');
    expect(created).toMatchObject({ from: 'tiny-base', adapters: { 'adapter.gguf': await sha256(out) } });
    expect(created?.template).toContain('<|im_start|>');
    expect(created?.parameters).toMatchObject({ stop: expect.arrayContaining(['<|im_end|>']), temperature: 0.7, top_p: 0.9 });

    const modelfile = await readFile(join(dir, 'ollama', 'adapter.Modelfile'), 'utf8');
    expect(r.modelfile).toBe(join(dir, 'ollama', 'adapter.Modelfile'));
    expect(modelfile).toMatch(/^FROM tiny-base$/m);
    expect(modelfile).toMatch(/^ADAPTER \.\/adapter\.gguf$/m);
    expect(modelfile).toContain(`TEMPLATE """${created?.template}"""`);
    expect(modelfile).toMatch(/^PARAMETER stop "<\|im_end\|>"$/m);

    const again = await exportModel(options);
    expect(again.ollama?.model).toBe('iceburg-tiny-v2');
  }, 120_000);

  it('a server that refuses adapters: an error offering the fused export; with --fallback fused, the Q4_K_M model is written and registered', async () => {
    await fake?.close();
    fake = await FakeOllama.start({ models: ['tiny-base'], refuseAdapters: { message: 'adapters are not supported by this server' } });
    const out = join(dir, 'refused', 'adapter.gguf');
    const options = { run: fx.runDir, model: 'tiny-base', gguf: 'adapter', out, modelfile: true, ollama: 'iceburg-tiny-v', ollamaHost: fake.host, ollamaModelsDir: store } as const;
    const error = await exportModel(options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OllamaRefusedAdapterExportError);
    expect((error as Error).message).toMatch(/refused the LoRA adapter: adapters are not supported by this server/);
    expect((error as Error).message).toContain(`rerun with --fallback fused (writes the Q4_K_M model to ${fusedPathFor(out)}`);
    expect((await stat(out)).isFile()).toBe(true);
    expect(fake.models.has('iceburg-tiny-v1:latest')).toBe(false);

    const r = await exportModel({ ...options, fallback: 'fused' });
    const fused = fusedPathFor(out);
    expect(r.fallback).toMatchObject({ out: fused, type: 'q4_k_m', modelfile: join(dir, 'refused', 'adapter.fused-q4_k_m.Modelfile') });
    expect(r.ollama).toMatchObject({ model: 'iceburg-tiny-v1', kind: 'model' });
    expect(fake.models.get('iceburg-tiny-v1:latest')).toMatchObject({ files: { 'adapter.fused-q4_k_m.gguf': await sha256(fused) } });
    expect(fake.models.get('iceburg-tiny-v1:latest')?.adapters).toBeUndefined();
    const file = await readGguf(fused);
    expect(optionalInteger(file, 'general.file_type')).toBe(15);
    const modelfile = await readFile(r.fallback!.modelfile!, 'utf8');
    expect(modelfile).toMatch(/^FROM \.\/adapter\.fused-q4_k_m\.gguf$/m);
    expect(modelfile).not.toMatch(/^ADAPTER/m);
  }, 180_000);
});
