import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../lib/model/generate.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { tensor, toTypedArray } from '../../lib/tensor.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

const run = promisify(execFile);
const prompt = [1, 17, 42, 5, 260, 99];

async function argmaxOfLast(model: LoadedModel, seq: number[], lora = true): Promise<number> {
  const t = await model.native.logits({ shape: [1, seq.length], tokens: Int32Array.from(seq) }, { lora });
  const v = (await toTypedArray(t)) as Float32Array;
  const vocab = t.shape[2]!;
  const last = v.subarray((seq.length - 1) * vocab);
  let best = 0;
  for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
  return best;
}

describe('generation', () => {
  let tiny: TinyModel;
  let model: LoadedModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 8, ggufType: 'F32' });
    model = await loadModel(tiny.ggufPath, { quantization: 'none', lora: { rank: 4, alpha: 8, seed: 1 } });
  });
  afterAll(async () => {
    model?.dispose();
    await tiny?.cleanup();
  });

  it('greedy decoding with the KV cache equals the argmax of a full forward pass at every step', async () => {
    const { tokens, finishReason } = await generate(model.native, prompt, { maxTokens: 12 });
    expect(finishReason).toBe('length');
    expect(tokens).toHaveLength(12);
    for (let i = 0; i < tokens.length; i++) {
      expect(tokens[i], `step ${i}`).toBe(await argmaxOfLast(model, [...prompt, ...tokens.slice(0, i)]));
    }
    expect((await generate(model.native, prompt, { maxTokens: 12 })).tokens).toEqual(tokens);
  });

  it('llama.cpp continues the same GGUF with the same greedy tokens', async () => {
    const oracle = await openLlamaCppOracle(tiny.ggufPath);
    try {
      const theirs = await oracle.greedy(prompt, 8);
      const ours = await generate(model.native, prompt, { maxTokens: theirs.length, lora: false });
      expect(ours.tokens).toEqual(theirs);
    } finally {
      await oracle.dispose();
    }
  });

  it('samples reproducibly by seed; top-k 1 is greedy; stop tokens end it', async () => {
    const a = await generate(model.native, prompt, { maxTokens: 10, temperature: 1.5, seed: 4 });
    const b = await generate(model.native, prompt, { maxTokens: 10, temperature: 1.5, seed: 4 });
    const c = await generate(model.native, prompt, { maxTokens: 10, temperature: 1.5, seed: 5 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
    const greedy = await generate(model.native, prompt, { maxTokens: 10 });
    expect((await generate(model.native, prompt, { maxTokens: 10, temperature: 2, topK: 1, seed: 9 })).tokens).toEqual(greedy.tokens);
    expect((await generate(model.native, prompt, { maxTokens: 10, temperature: 2, topP: 1e-6, seed: 9 })).tokens).toEqual(greedy.tokens);
    const stopAt = greedy.tokens[3]!;
    const stopped = await generate(model.native, prompt, { maxTokens: 10, stopTokens: [stopAt] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens).toEqual(greedy.tokens.slice(0, greedy.tokens.indexOf(stopAt)));
  });

  it('switches the adapter off and on without reloading the base', async () => {
    const params = await model.native.loraParameters();
    const updates: Record<string, Awaited<ReturnType<typeof tensor>>> = {};
    for (const [name, t] of Object.entries(params)) {
      if (name.endsWith('lora_b')) updates[name] = await tensor(Float32Array.from({ length: t.shape[0]! * t.shape[1]! }, (_, i) => Math.sin(i) * 0.5), t.shape);
    }
    await model.native.setLoraParameters(updates);
    const base = await generate(model.native, prompt, { maxTokens: 8, lora: false });
    const tuned = await generate(model.native, prompt, { maxTokens: 8 });
    expect(tuned.tokens).not.toEqual(base.tokens);
    expect(tuned.tokens[0]).toBe(await argmaxOfLast(model, prompt, true));
    expect(base.tokens[0]).toBe(await argmaxOfLast(model, prompt, false));
    await model.native.setLoraEnabled(false);
    expect((await generate(model.native, prompt, { maxTokens: 8 })).tokens).toEqual(base.tokens);
    await model.native.setLoraEnabled(true);
    expect((await generate(model.native, prompt, { maxTokens: 8 })).tokens).toEqual(tuned.tokens);
  });

  it('the generate CLI prints token ids that other tools can compare', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', tiny.ggufPath, '--prompt', 'hello world', '--max-tokens', '6', '--json'],
      { cwd: process.cwd() },
    );
    const out = JSON.parse(stdout) as { prompt_tokens: number[]; tokens: number[]; text: string };
    const oracle = await openLlamaCppOracle(tiny.ggufPath);
    try {
      expect(out.prompt_tokens).toEqual(oracle.tokenize('hello world', { addBos: true }));
      // Without an adapter the CLI loads the model as stored: this F32 GGUF stays dense.
      const base = await loadModel(tiny.ggufPath, { quantization: 'none' });
      try {
        const expected = await generate(base.native, out.prompt_tokens, { maxTokens: 6, stopTokens: [tiny.vocab.eosId] });
        expect(out.tokens).toEqual(expected.tokens);
      } finally {
        base.dispose();
      }
      expect(out.text).toBe(oracle.detokenize(out.tokens));
    } finally {
      await oracle.dispose();
    }
    const info = await run(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'info', '--model', tiny.ggufPath, '--json']);
    const report = JSON.parse(info.stdout) as { architecture: { numLayers: number; ropeTraditional: boolean }; linearStorage: Record<string, number>; parameters: number };
    expect(report.architecture.numLayers).toBe(2);
    expect(report.architecture.ropeTraditional).toBe(true);
    expect(report.linearStorage).toEqual({ dense: 14 });
    // Every element the fixture wrote, counted independently of the architecture formula.
    expect(report.parameters).toBe([...tiny.weights.values()].reduce((n, w) => n + w.values.length, 0));
  }, 60_000);

  it('generate --bits none keeps the F32 base dense, so its tokens are llama.cpp\'s greedy tokens', async () => {
    const { stdout } = await run(process.execPath, [
      '--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', tiny.ggufPath, '--prompt', 'hello world', '--max-tokens', '8', '--bits', 'none', '--json',
    ]);
    const out = JSON.parse(stdout) as { prompt_tokens: number[]; tokens: number[] };
    const oracle = await openLlamaCppOracle(tiny.ggufPath);
    try {
      const theirs = await oracle.greedy(out.prompt_tokens, 8);
      const eos = theirs.indexOf(tiny.vocab.eosId);
      expect(out.tokens).toEqual(eos >= 0 ? theirs.slice(0, eos) : theirs);
    } finally {
      await oracle.dispose();
    }
    await expect(run(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'info', '--model', tiny.ggufPath, '--bits', 'seven'])).rejects.toThrow(
      /--bits.*expected one of 2, 3, 4, 5, 6, 8 or none/s,
    );
  }, 60_000);
});
