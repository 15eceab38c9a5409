import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ollama } from 'ollama';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildModelfile } from '../../lib/export/modelfile.js';
import { ollamaHostUrl } from '../../lib/export/ollama-connection.js';
import {
  isOllamaAdapterRefused,
  OllamaAdapterRefusedError,
  OllamaDigestMismatchError,
  OllamaRequestError,
  OllamaUnavailableError,
} from '../../lib/export/ollama-errors.js';
import { registerWithOllama, type OllamaStatus } from '../../lib/export/ollama-register.js';
import { OLLAMA_TEMPLATES } from '../../lib/export/ollama-templates.js';
import { closedPort, FakeOllama, type FakeOllamaOptions } from '../fixtures/fake-ollama.js';
import { tempDir } from '../helpers/temp-dir.js';

const servers: FakeOllama[] = [];
async function fake(options: FakeOllamaOptions = {}): Promise<FakeOllama> {
  const s = await FakeOllama.start(options);
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

let dir: string;
let gguf: string;
let digest: string;
beforeAll(() => {
  dir = tempDir('ollama-register-');
  gguf = join(dir, 'iceburg-q4_k_m.gguf');
  // Not a real model: the fake server stores blobs by digest without reading them, as Ollama does on upload.
  writeFileSync(gguf, Buffer.concat([Buffer.from('GGUF'), randomBytes(300_000)]));
  digest = `sha256:${createHash('sha256').update(readFileSync(gguf)).digest('hex')}`;
});

const savedHost = process.env.OLLAMA_HOST;
afterEach(() => {
  if (savedHost === undefined) delete process.env.OLLAMA_HOST;
  else process.env.OLLAMA_HOST = savedHost;
});

const chatml = buildModelfile({ from: './iceburg-q4_k_m.gguf', chatTemplate: 'chatml', system: 'You are ICEBURG.' });

describe('registerWithOllama', () => {
  it('fused model: uploads the blob and creates with files, template, parameters (stop as an array), system', async () => {
    const server = await fake();
    const reg = await registerWithOllama({
      name: 'iceburg-test',
      ggufPath: gguf,
      kind: 'model',
      template: chatml.template,
      system: 'You are ICEBURG.',
      parameters: chatml.parameters,
      host: server.host,
    });
    expect(reg).toMatchObject({ model: 'iceburg-test', digest, uploaded: true, serverVersion: '0.33.0', kind: 'model' });
    expect(server.requestsTo('POST', '/api/blobs/')).toEqual([{ method: 'POST', path: `/api/blobs/${digest}`, bytes: 300_004 }]);
    expect(server.requestsTo('POST', '/api/create').map((r) => r.json)).toEqual([
      {
        model: 'iceburg-test',
        stream: true,
        files: { 'iceburg-q4_k_m.gguf': digest },
        template: OLLAMA_TEMPLATES.chatml.goTemplate,
        system: 'You are ICEBURG.',
        parameters: { stop: ['<|im_start|>', '<|im_end|>'], temperature: 0.7, top_p: 0.9 },
      },
    ]);
    expect(server.requestsTo('POST', '/api/show').map((r) => r.json)).toEqual([{ model: 'iceburg-test' }]);
  });

  it('adapter: creates with from + adapters on the base model', async () => {
    const server = await fake({ models: ['dolphin-mistral:7b'] });
    const reg = await registerWithOllama({
      name: 'iceburg-adapter',
      ggufPath: gguf,
      kind: 'adapter',
      from: 'dolphin-mistral:7b',
      template: chatml.template,
      parameters: chatml.parameters,
      host: server.host,
    });
    expect(reg.kind).toBe('adapter');
    expect(server.requestsTo('POST', '/api/create')[0]!.json).toEqual({
      model: 'iceburg-adapter',
      stream: true,
      from: 'dolphin-mistral:7b',
      adapters: { 'iceburg-q4_k_m.gguf': digest },
      template: OLLAMA_TEMPLATES.chatml.goTemplate,
      parameters: { stop: ['<|im_start|>', '<|im_end|>'], temperature: 0.7, top_p: 0.9 },
    });
  });

  it('the upload streams: a 128 MiB GGUF never sits in memory', async () => {
    const server = await fake();
    const big = join(dir, 'big.gguf');
    const size = 128 << 20;
    writeFileSync(big, Buffer.alloc(size));
    // vitest runs with --expose-gc: after a collection, arrayBuffers counts only buffers still held.
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc).toBeTypeOf('function');
    gc!();
    const baseline = process.memoryUsage().arrayBuffers;
    let held = 0;
    let samples = 0;
    const onStatus = (s: OllamaStatus) => {
      if (!s.status.startsWith('uploading') || s.completed! % (8 << 20) >= (2 << 20)) return;
      gc!();
      samples++;
      held = Math.max(held, process.memoryUsage().arrayBuffers - baseline);
    };
    await registerWithOllama({ name: 'big', ggufPath: big, kind: 'model', host: server.host, onStatus });
    expect([...server.blobs.values()]).toContain(size);
    expect(samples).toBeGreaterThan(8);
    // fetch given the file as a stream kept every chunk it had sent until the request ended
    // (135 MB held here); the pipeline holds ≈ 17 MB, most of it on the in-process server's side.
    expect(held).toBeLessThan(48 << 20);
  });

  it('a blob the server holds is not sent again (HEAD 200, no POST)', async () => {
    const server = await fake({ blobs: [digest] });
    const reg = await registerWithOllama({ name: 'again', ggufPath: gguf, kind: 'model', host: server.host });
    expect(reg.uploaded).toBe(false);
    expect(server.requestsTo('HEAD', '/api/blobs/').map((r) => r.path)).toEqual([`/api/blobs/${digest}`]);
    expect(server.requestsTo('POST', '/api/blobs/')).toEqual([]);
    expect(server.requestsTo('POST', '/api/create')).toHaveLength(1);
  });

  it('a digest mismatch reported by the server is an error, and nothing is created', async () => {
    const server = await fake({ corruptUploads: true });
    const err = await registerWithOllama({ name: 'bad', ggufPath: gguf, kind: 'model', host: server.host }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OllamaDigestMismatchError);
    expect((err as Error).message).toContain(`digest mismatch, expected "${digest}"`);
    expect((err as Error).message).toContain(server.host);
    expect(server.requestsTo('POST', '/api/create')).toEqual([]);
  });

  it('streamed status reaches onStatus in order: hashing, upload progress, then the server lines', async () => {
    const server = await fake();
    const seen: OllamaStatus[] = [];
    await registerWithOllama({ name: 'progress', ggufPath: gguf, kind: 'model', template: chatml.template, parameters: chatml.parameters, host: server.host, onStatus: (s) => seen.push(s) });
    const uploads = seen.filter((s) => s.status === `uploading ${digest}`);
    expect(uploads[0]).toMatchObject({ completed: 0, total: 300_004 });
    expect(uploads.at(-1)).toMatchObject({ completed: 300_004, total: 300_004 });
    const completed = uploads.map((s) => s.completed!);
    expect(completed).toEqual([...completed].sort((a, b) => a - b));
    expect(seen.map((s) => s.status).filter((s) => !s.startsWith('uploading'))).toEqual([
      `hashing ${gguf}`,
      'parsing GGUF',
      `using existing layer ${digest}`,
      'creating template layer',
      'creating parameters layer',
      'writing manifest',
      'success',
    ]);
  });

  it('a name ending in -v takes the version after the highest the server holds', async () => {
    const cases: [string[], string, number][] = [
      [[], 'iceburg-dolphin-mistral-v1', 1],
      [['iceburg-dolphin-mistral-v1:latest', 'iceburg-dolphin-mistral-v2:latest'], 'iceburg-dolphin-mistral-v3', 3],
      // A gap is not refilled: v3 stays older than the new one.
      [['iceburg-dolphin-mistral-v1:latest', 'iceburg-dolphin-mistral-v3:q4'], 'iceburg-dolphin-mistral-v4', 4],
      // Other names that share the prefix are not versions of it.
      [['iceburg-dolphin-mistral-v2x:latest', 'iceburg-dolphin-mistral-vv:latest', 'other-iceburg-dolphin-mistral-v7:latest'], 'iceburg-dolphin-mistral-v1', 1],
    ];
    for (const [models, name, version] of cases) {
      const server = await fake({ models });
      const reg = await registerWithOllama({ name: 'iceburg-dolphin-mistral-v', ggufPath: gguf, kind: 'model', host: server.host });
      expect(reg).toMatchObject({ model: name, version });
      expect(server.requestsTo('POST', '/api/create')[0]!.json).toMatchObject({ model: name });
      expect(server.models.has(`${name}:latest`)).toBe(true);
    }
  });

  it('Ollama not running: an error naming host:port and how to start it', async () => {
    const port = await closedPort();
    const err = await registerWithOllama({ name: 'x', ggufPath: gguf, kind: 'model', host: `127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OllamaUnavailableError);
    expect((err as Error).message).toContain(`http://127.0.0.1:${port}`);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    expect((err as Error).message).toMatch(/ollama serve/);
  });

  for (const streamed of [false, true]) {
    it(`an adapter the server refuses (${streamed ? 'streamed error line' : 'HTTP 400'}) is OllamaAdapterRefusedError with its message`, async () => {
      const message = 'the ADAPTER command is no longer supported';
      const server = await fake({ version: '0.34.1', models: ['dolphin-mistral:7b'], refuseAdapters: { message, streamed } });
      const err = await registerWithOllama({ name: 'a', ggufPath: gguf, kind: 'adapter', from: 'dolphin-mistral:7b', host: server.host }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OllamaAdapterRefusedError);
      expect(isOllamaAdapterRefused(err)).toBe(true);
      expect(err).toMatchObject({ serverMessage: message, serverVersion: '0.34.1' });
      expect(server.models.has('a:latest')).toBe(false);
    });
  }

  it('other create failures are not taken for an adapter refusal', async () => {
    const server = await fake({ models: ['dolphin-mistral:7b'], failCreate: 'write /models/manifests: no space left on device' });
    const err = await registerWithOllama({ name: 'a', ggufPath: gguf, kind: 'adapter', from: 'dolphin-mistral:7b', host: server.host }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OllamaRequestError);
    expect(isOllamaAdapterRefused(err)).toBe(false);
    expect((err as Error).message).toContain('no space left on device');
    const missingBase = await registerWithOllama({ name: 'b', ggufPath: gguf, kind: 'adapter', from: 'nope:7b', host: server.host }).catch((e: unknown) => e);
    expect(missingBase).toBeInstanceOf(OllamaRequestError);
    expect(missingBase).toMatchObject({ status: 404 });
    expect(isOllamaAdapterRefused(missingBase)).toBe(false);
  });

  it('a bad name fails before anything is sent', async () => {
    const server = await fake();
    await expect(registerWithOllama({ name: 'ice burg', ggufPath: gguf, kind: 'model', host: server.host })).rejects.toThrow(/not an Ollama model name/);
    expect(server.requests).toEqual([]);
  });

  it('a server older than 0.5.5 is refused before any upload', async () => {
    const server = await fake({ version: '0.5.4' });
    await expect(registerWithOllama({ name: 'x', ggufPath: gguf, kind: 'model', host: server.host })).rejects.toThrow(/0\.5\.4 is older than 0\.5\.5/);
    expect(server.requestsTo('HEAD', '/api/blobs/')).toEqual([]);
  });

  it('show afterwards: a model created without our template is an error', async () => {
    const server = await fake({ ignoreTemplate: true });
    const err = await registerWithOllama({ name: 'no-template', ggufPath: gguf, kind: 'model', template: chatml.template, parameters: chatml.parameters, host: server.host }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OllamaRequestError);
    expect((err as Error).message).toMatch(/no-template was created, but its template is not what we sent/);
  });

  it('OLLAMA_HOST is honoured when no host is given', async () => {
    const server = await fake();
    process.env.OLLAMA_HOST = server.host;
    const reg = await registerWithOllama({ name: 'from-env', ggufPath: gguf, kind: 'model' });
    expect(reg.host).toBe(`http://${server.host}`);
    expect(server.models.has('from-env:latest')).toBe(true);
  });
});

describe('ollamaHostUrl', () => {
  it("formats hosts as Ollama's JS client does", () => {
    const formatted = (h: string) => (new Ollama({ host: h }) as unknown as { config: { host: string } }).config.host;
    for (const h of ['127.0.0.1:11434', 'http://127.0.0.1:11434', 'localhost', 'example.com:8080', 'http://example.com', 'https://example.com', ':5000', 'http://[::1]:11434', 'http://user:pw@box:1234/']) {
      expect(ollamaHostUrl(h), h).toBe(formatted(h));
    }
    expect(ollamaHostUrl('')).toBe('http://127.0.0.1:11434');
    expect(ollamaHostUrl('example.com')).toBe('http://example.com:11434');
    expect(ollamaHostUrl('https://example.com')).toBe('https://example.com:443');
  });
});
