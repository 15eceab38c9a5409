import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGguf } from '../../lib/gguf/reader.js';
import {
  OllamaModelNotFoundError,
  listOllamaModels,
  ollamaBlobPath,
  ollamaModelsDirs,
  parseOllamaModelName,
  resolveOllamaModel,
} from '../../lib/source/ollama-store.js';
import { loadModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

const sha = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

interface Layer {
  mediaType: string;
  digest: string;
  size: number;
}

/** A fake Ollama store: blobs by digest, manifests at the paths Ollama uses. */
class FakeStore {
  constructor(readonly root: string) {}

  async blob(data: string | Uint8Array, mediaType: string, options: { colonName?: boolean; digestSep?: ':' | '-' } = {}): Promise<Layer> {
    const hex = sha(data);
    const name = options.colonName === true ? `sha256:${hex}` : `sha256-${hex}`;
    await mkdir(join(this.root, 'blobs'), { recursive: true });
    await writeFile(join(this.root, 'blobs', name), data);
    return { mediaType, digest: `sha256${options.digestSep ?? ':'}${hex}`, size: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength };
  }

  async manifest(rel: string, body: unknown, dirName = 'manifests'): Promise<string> {
    const path = join(this.root, dirName, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, JSON.stringify(body));
    return path;
  }
}

const CONFIG: Layer = { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 };
const TEMPLATE = '<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n';

let dir: string;
let tiny: TinyModel;
let gguf: Uint8Array;
let store: FakeStore;
let modelLayer: Layer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ollama-'));
  tiny = await makeTinyModel({ ggufType: 'Q4_0', seed: 31 });
  gguf = await readFile(tiny.ggufPath);
  store = new FakeStore(join(dir, 'models'));
  modelLayer = await store.blob(gguf, 'application/vnd.ollama.image.model');
  const layers = [
    modelLayer,
    await store.blob(TEMPLATE, 'application/vnd.ollama.image.template'),
    await store.blob('You are Dolphin.', 'application/vnd.ollama.image.system'),
    await store.blob(JSON.stringify({ stop: ['<|im_start|>', '<|im_end|>'], num_ctx: 4096 }), 'application/vnd.ollama.image.params'),
    await store.blob('Apache 2.0', 'application/vnd.ollama.image.license'),
    await store.blob('MIT', 'application/vnd.ollama.image.license'),
    await store.blob(new Uint8Array([1, 2, 3]), 'application/vnd.ollama.image.adapter', { digestSep: '-' }),
  ];
  await store.manifest('registry.ollama.ai/library/dolphin-mistral/7b', {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: CONFIG,
    layers,
  });
});

afterAll(async () => {
  await tiny.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('parseOllamaModelName', () => {
  it('fills registry, namespace and tag defaults as Ollama does', () => {
    expect(parseOllamaModelName('dolphin-mistral:7b')).toEqual({ host: 'registry.ollama.ai', namespace: 'library', model: 'dolphin-mistral', tag: '7b' });
    expect(parseOllamaModelName('dolphin-mistral')).toEqual({ host: 'registry.ollama.ai', namespace: 'library', model: 'dolphin-mistral', tag: 'latest' });
    expect(parseOllamaModelName('library/llama3.2:3b-instruct-q4_0')).toEqual({ host: 'registry.ollama.ai', namespace: 'library', model: 'llama3.2', tag: '3b-instruct-q4_0' });
    expect(parseOllamaModelName('hf.co/bartowski/Mistral-7B:Q4_K_M')).toEqual({ host: 'hf.co', namespace: 'bartowski', model: 'Mistral-7B', tag: 'Q4_K_M' });
    expect(parseOllamaModelName('localhost:11434/me/tuned')).toEqual({ host: 'localhost:11434', namespace: 'me', model: 'tuned', tag: 'latest' });
    expect(parseOllamaModelName('https://ollama.com/library/m:t')).toEqual({ host: 'ollama.com', namespace: 'library', model: 'm', tag: 't' });
  });

  it('rejects names that are malformed or would escape the store', () => {
    for (const bad of ['', 'a/b/c/d', '../x', 'x/../../etc', 'x:', 'a b', 'ns/.hidden:1', 'x:../y']) {
      expect(() => parseOllamaModelName(bad), bad).toThrow(/invalid Ollama model name/);
    }
  });
});

describe('resolveOllamaModel', () => {
  it('resolves a name through $OLLAMA_MODELS to the GGUF blob and parses the other layers', async () => {
    const m = await resolveOllamaModel('dolphin-mistral:7b', { env: { OLLAMA_MODELS: store.root } });
    expect(m.name).toBe('registry.ollama.ai/library/dolphin-mistral:7b');
    expect(m.modelsDir).toBe(store.root);
    expect(m.manifestPath).toBe(join(store.root, 'manifests/registry.ollama.ai/library/dolphin-mistral/7b'));
    expect(m.modelPath).toBe(join(store.root, 'blobs', `sha256-${sha(gguf)}`));
    expect(m.modelDigest).toBe(`sha256:${sha(gguf)}`);
    expect(m.modelSize).toBe(gguf.byteLength);
    expect(m.template).toBe(TEMPLATE);
    expect(m.system).toBe('You are Dolphin.');
    expect(m.params).toEqual({ stop: ['<|im_start|>', '<|im_end|>'], num_ctx: 4096 });
    expect(m.license).toEqual(['Apache 2.0', 'MIT']);
    expect(m.adapterPaths).toEqual([join(store.root, 'blobs', `sha256-${sha(new Uint8Array([1, 2, 3]))}`)]);
    expect(m.projectorPaths).toEqual([]);
    const f = await readGguf(m.modelPath);
    expect(f.metadata.get('general.architecture')).toBe('llama');
    expect(f.tensors.find((t) => t.name === 'blk.0.attn_q.weight')?.typeName).toBe('Q4_0');
  });

  it('accepts fully qualified and differently cased names, and the explicit modelsDir option', async () => {
    for (const name of ['registry.ollama.ai/library/dolphin-mistral:7b', 'library/dolphin-mistral:7b', 'Dolphin-Mistral:7B']) {
      expect((await resolveOllamaModel(name, { modelsDir: store.root })).modelPath).toBe(join(store.root, 'blobs', `sha256-${sha(gguf)}`));
    }
  });

  it('verifies the model digest on request', async () => {
    await expect(resolveOllamaModel('dolphin-mistral:7b', { modelsDir: store.root, verifyModelDigest: true })).resolves.toMatchObject({ modelSize: gguf.byteLength });
    const other = new FakeStore(join(dir, 'tampered'));
    const layer = await other.blob(gguf, 'application/vnd.ollama.image.model');
    const tampered = Buffer.from(gguf);
    tampered[100] = (tampered[100] as number) ^ 0xff;
    await writeFile(join(other.root, 'blobs', `sha256-${sha(gguf)}`), tampered);
    await other.manifest('registry.ollama.ai/library/m/latest', { schemaVersion: 2, config: CONFIG, layers: [layer] });
    await expect(resolveOllamaModel('m', { modelsDir: other.root, verifyModelDigest: true })).rejects.toThrow(/does not match its digest/);
  });

  it('finds old stores that name blobs sha256:<hex>', async () => {
    const old = new FakeStore(join(dir, 'old'));
    const layer = await old.blob('GGUF-ish bytes', 'application/vnd.ollama.image.model', { colonName: true });
    await old.manifest('registry.ollama.ai/library/old/latest', { schemaVersion: 2, config: CONFIG, layers: [layer] });
    const m = await resolveOllamaModel('old', { modelsDir: old.root });
    expect(m.modelPath).toBe(join(old.root, 'blobs', `sha256:${sha('GGUF-ish bytes')}`));
  });

  it('reads newer manifests-v2 stores and picks the GGUF child of a manifest list', async () => {
    const v2 = new FakeStore(join(dir, 'v2'));
    const model = await v2.blob(gguf, 'application/vnd.ollama.image.model');
    const mlx = await v2.blob('safetensors index', 'application/vnd.ollama.image.tensor');
    const child = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: CONFIG, layers: [model] });
    const childLayer = await v2.blob(child, 'application/vnd.docker.distribution.manifest.v2+json');
    await v2.manifest(
      'ollama.com/library/dolphin-mistral/7b',
      {
        schemaVersion: 2,
        mediaType: 'application/vnd.ollama.manifest.list.v2+json',
        manifests: [
          { schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', runner: 'mlx', format: 'safetensors', config: CONFIG, layers: [mlx] },
          { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: childLayer.digest, runner: 'ollama', format: 'gguf' },
        ],
      },
      'manifests-v2',
    );
    const m = await resolveOllamaModel('dolphin-mistral:7b', { modelsDir: v2.root });
    expect(m.manifestPath).toBe(join(v2.root, 'manifests-v2/ollama.com/library/dolphin-mistral/7b'));
    expect(m.modelPath).toBe(join(v2.root, 'blobs', `sha256-${sha(gguf)}`));
    expect(m.manifest.format).toBe('gguf');
  });

  it('follows a manifest that is a symlink to its blob', async () => {
    const linked = new FakeStore(join(dir, 'linked'));
    const layer = await linked.blob(gguf, 'application/vnd.ollama.image.model');
    const body = await linked.blob(JSON.stringify({ schemaVersion: 2, config: CONFIG, layers: [layer] }), 'manifest');
    const path = join(linked.root, 'manifests-v2/ollama.com/library/linked/latest');
    await mkdir(dirname(path), { recursive: true });
    await symlink(join(linked.root, 'blobs', `sha256-${body.digest.slice(7)}`), path);
    expect((await resolveOllamaModel('linked', { modelsDir: linked.root })).modelSize).toBe(gguf.byteLength);
  });

  it('says where it looked and what exists when a model is missing', async () => {
    const err = await resolveOllamaModel('llama3:8b', { env: { OLLAMA_MODELS: store.root } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OllamaModelNotFoundError);
    const e = err as OllamaModelNotFoundError;
    expect(e.message).toContain("Ollama model 'llama3:8b' (registry.ollama.ai/library/llama3:8b) not found");
    expect(e.searched).toContain(join(store.root, 'manifests/registry.ollama.ai/library/llama3/8b'));
    expect(e.searched).toContain(join(store.root, 'manifests-v2/ollama.com/library/llama3/8b'));
    expect(e.message).toContain(join(store.root, 'manifests/registry.ollama.ai/library/llama3/8b'));
    expect(e.available).toEqual(['registry.ollama.ai/library/dolphin-mistral:7b']);
    expect(e.message).toContain('Models present: registry.ollama.ai/library/dolphin-mistral:7b');

    const empty = join(dir, 'empty');
    await expect(resolveOllamaModel('x', { modelsDir: empty })).rejects.toThrow(`No models found in ${empty} (set OLLAMA_MODELS`);
  });

  it('names the layer and paths when a blob is missing or incomplete', async () => {
    const broken = new FakeStore(join(dir, 'broken'));
    const hex = 'ab'.repeat(32);
    await broken.manifest('registry.ollama.ai/library/gone/latest', { schemaVersion: 2, config: CONFIG, layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${hex}`, size: 10 }] });
    await expect(resolveOllamaModel('gone', { modelsDir: broken.root })).rejects.toThrow(
      `Ollama blob for application/vnd.ollama.image.model sha256:${hex} (from ${join(broken.root, 'manifests/registry.ollama.ai/library/gone/latest')}) is missing; looked at ${join(broken.root, 'blobs', `sha256-${hex}`)}`,
    );
    const layer = await broken.blob('12345', 'application/vnd.ollama.image.model');
    await broken.manifest('registry.ollama.ai/library/short/latest', { schemaVersion: 2, config: CONFIG, layers: [{ ...layer, size: 99 }] });
    await expect(resolveOllamaModel('short', { modelsDir: broken.root })).rejects.toThrow(/is 5 bytes but manifest .* says 99 \(incomplete pull\?\)/);
  });

  it('validates manifests and text layers', async () => {
    const bad = new FakeStore(join(dir, 'bad'));
    await bad.manifest('registry.ollama.ai/library/m1/latest', { schemaVersion: 2, layers: [{ mediaType: 'x', digest: 'md5:abc', size: 1 }] });
    await expect(resolveOllamaModel('m1', { modelsDir: bad.root })).rejects.toThrow(/manifest .*m1\/latest is malformed: layers\.0\.digest: digest must be sha256/);
    await bad.manifest('registry.ollama.ai/library/m2/latest', { schemaVersion: 2, layers: [] });
    await expect(resolveOllamaModel('m2', { modelsDir: bad.root })).rejects.toThrow(/has 0 model layers/);
    await mkdir(join(bad.root, 'manifests/registry.ollama.ai/library/m3'), { recursive: true });
    await writeFile(join(bad.root, 'manifests/registry.ollama.ai/library/m3/latest'), '{not json');
    await expect(resolveOllamaModel('m3', { modelsDir: bad.root })).rejects.toThrow(/m3\/latest is not valid JSON/);
    const model = await bad.blob('weights', 'application/vnd.ollama.image.model');
    const params = await bad.blob('[1, 2]', 'application/vnd.ollama.image.params');
    await bad.manifest('registry.ollama.ai/library/m4/latest', { schemaVersion: 2, layers: [model, params] });
    await expect(resolveOllamaModel('m4', { modelsDir: bad.root })).rejects.toThrow(/params layer .* is not a JSON object/);
    const template = await bad.blob('{{ .Prompt }}', 'application/vnd.ollama.image.template');
    await writeFile(join(bad.root, 'blobs', `sha256-${template.digest.slice(7)}`), '{{ .Evil }}!');
    await bad.manifest('registry.ollama.ai/library/m5/latest', { schemaVersion: 2, layers: [model, { ...template, size: 12 }] });
    await expect(resolveOllamaModel('m5', { modelsDir: bad.root })).rejects.toThrow(/does not match its digest/);
  });
});

describe('store locations and listing', () => {
  it('uses $OLLAMA_MODELS alone when set, else the per-user default', () => {
    expect(ollamaModelsDirs({ OLLAMA_MODELS: '/data/ollama' })).toEqual(['/data/ollama']);
    expect(ollamaModelsDirs({ OLLAMA_MODELS: '"/quoted dir"' })).toEqual(['/quoted dir']);
    expect(ollamaModelsDirs({})[0]).toBe(join(homedir(), '.ollama', 'models'));
    expect(ollamaModelsDirs({ OLLAMA_MODELS: '' })[0]).toBe(join(homedir(), '.ollama', 'models'));
  });

  it('maps digests to blob paths and lists the models of a store', async () => {
    expect(ollamaBlobPath('/m', `sha256:${'a'.repeat(64)}`)).toBe(`/m/blobs/sha256-${'a'.repeat(64)}`);
    expect(() => ollamaBlobPath('/m', 'sha256:../../x')).toThrow(/invalid blob digest/);
    expect(await listOllamaModels(store.root)).toEqual(['registry.ollama.ai/library/dolphin-mistral:7b']);
  });
});

describe('training straight from an Ollama blob', () => {
  it('loads the model by its Ollama name from a read-only blob, as from the GGUF file itself', async () => {
    const blob = ollamaBlobPath(store.root, modelLayer.digest);
    await chmod(blob, 0o444);
    const byName = await loadModel('dolphin-mistral:7b', { ollamaModelsDir: store.root });
    const byPath = await loadModel(tiny.ggufPath);
    try {
      expect(byName.source).toMatchObject({ kind: 'ollama', path: blob });
      const batch = { shape: [1, 5] as [number, number], tokens: Int32Array.from([1, 20, 30, 40, 50]) };
      const a = (await toTypedArray(await byName.native.logits(batch))) as Float32Array;
      const b = (await toTypedArray(await byPath.native.logits(batch))) as Float32Array;
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    } finally {
      byName.dispose();
      byPath.dispose();
    }
    await expect(loadModel('no-such-model:7b', { ollamaModelsDir: store.root })).rejects.toThrow(/no-such-model/);
  });
});
