import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDemo, type DemoResult } from '../../lib/demo/demo.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { openRegistry } from '../../lib/rollout/registry.js';
import { FakeOllama } from '../fixtures/fake-ollama.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { tempDir } from '../helpers/temp-dir.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');

describe('mlx-qlora demo', () => {
  let fake: FakeOllama | undefined;
  afterAll(async () => fake?.close());

  it('runs the whole flow as a command and writes a GGUF llama.cpp loads', async () => {
    const out = join(tempDir('demo-'), 'demo');
    // A closed port stands for "no Ollama here": the demo must finish without it.
    const result = spawnSync(process.execPath, ['--import', 'tsx', cli, 'demo', '--out', out], {
      encoding: 'utf8',
      env: { ...process.env, OLLAMA_HOST: '127.0.0.1:9' },
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/6\/6 version/);
    expect(result.stdout).toMatch(/Ollama does not answer at http:\/\/127\.0\.0\.1:9/);
    const fused = join(out, 'export', 'iceburg-demo-q8_0.gguf');
    const gguf = await readGguf(fused);
    expect(gguf.metadata.get('general.file_type')).toBe(7);
    const oracle = await openLlamaCppOracle(fused);
    try {
      const prompt = oracle.tokenize('<|im_start|>user\nExplain glacier simply.<|im_end|>\n<|im_start|>assistant\n', { addBos: true, special: true });
      expect((await oracle.greedy(prompt, 8)).length).toBeGreaterThan(0);
    } finally {
      await oracle.dispose();
    }
    const versions = await openRegistry(out).list();
    expect(versions.map((v) => [v.name, v.status])).toEqual([['iceburg-demo-v1', 'current']]);
    expect(versions[0]!.exports.map((e) => e.type)).toEqual(['adapter', 'q8_0']);
    expect(existsSync(join(out, 'eval', 'report.html'))).toBe(true);
  }, 240_000);

  it('learns the logs (tuned beats base) and registers with an Ollama that answers', async () => {
    fake = await FakeOllama.start();
    const out = join(tempDir('demo-'), 'demo');
    const lines: string[] = [];
    const r: DemoResult = await runDemo({ out, steps: 120, ollamaHost: fake.host, log: (l) => lines.push(l) });
    expect(r.lastLoss).toBeLessThan(r.firstLoss / 4);
    expect(r.eval.tuned.loss).toBeLessThan(r.eval.base.loss / 4);
    expect(r.eval.tuned.exactMatch).toBeGreaterThan(r.eval.base.exactMatch);
    expect(r.ollama).toEqual({ name: 'iceburg-demo-v1' });
    expect([...fake.models.keys()]).toContain('iceburg-demo-v1:latest');
    expect(r.version.ollama).toBe('iceburg-demo-v1');
    expect(lines.some((l) => l.includes('registered as iceburg-demo-v1'))).toBe(true);
  }, 240_000);
});
