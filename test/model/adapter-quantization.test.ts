/**
 * The base quantization a model is loaded with when no --bits is given: what the adapter records
 * it was trained on; without an adapter (or with one that records nothing) the model as stored.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../lib/model/generate.js';
import { defaultBaseQuantization, ggufStoredQuantization, loadModel, type LoadModelOptions } from '../../lib/model/load-model.js';
import { tensor, disposeAll, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { saveAdapterFolder } from '../helpers/adapter-folder.js';
import { seededFloats } from '../helpers/reference.js';

const lora: LoadModelOptions['lora'] = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'], seed: 3 };

let tiny: TinyModel;
/** Adapters on the same weights: one records a dense base, one 4-bit g32, one (mlx-lm's) nothing. */
let dense: string;
let fourBit: string;
let unrecorded: string;

async function rewriteBaseModel(from: string, to: string, edit: (config: Record<string, unknown>) => void): Promise<void> {
  const { cp } = await import('node:fs/promises');
  await cp(from, to, { recursive: true });
  const file = join(to, 'adapter_config.json');
  const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(config);
  await writeFile(file, JSON.stringify(config));
}

async function storage(options: LoadModelOptions, spec = tiny.hfDir): Promise<{ bits: number; group: number; linear: Record<string, number> }> {
  const model = await loadModel(spec, options);
  try {
    return { bits: model.build.quantBits, group: model.build.quantGroupSize, linear: (await model.native.info()).linearStorage };
  } finally {
    model.dispose();
  }
}

describe('default base quantization', () => {
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 41 });
    const model = await loadModel(tiny.hfDir, { quantization: 'none', lora });
    try {
      const params = await model.native.loraParameters();
      const updates: Record<string, Tensor> = {};
      let seed = 900;
      for (const [name, p] of Object.entries(params)) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.3), p.shape);
      await model.native.setLoraParameters(updates);
      disposeAll(Object.values(updates), Object.values(params));
      dense = join(tiny.root, 'adapter-dense');
      await saveAdapterFolder(model, dense, lora!);
    } finally {
      model.dispose();
    }
    fourBit = join(tiny.root, 'adapter-4bit');
    await rewriteBaseModel(dense, fourBit, (c) => {
      (c.base_model as Record<string, unknown>).quantization = { bits: 4, group_size: 32 };
    });
    unrecorded = join(tiny.root, 'adapter-mlx-lm');
    await rewriteBaseModel(dense, unrecorded, (c) => {
      delete c.base_model;
    });
  }, 120_000);
  afterAll(async () => tiny?.cleanup());

  it('the rule: the adapter record first, else the model as stored', async () => {
    expect(JSON.parse(await readFile(join(dense, 'adapter_config.json'), 'utf8')).base_model.quantization).toBeNull();
    expect(await defaultBaseQuantization({ bits: 8, groupSize: 64 }, dense)).toBe('none');
    expect(await defaultBaseQuantization('none', fourBit)).toEqual({ bits: 4, groupSize: 32 });
    expect(await defaultBaseQuantization({ bits: 8, groupSize: 64 }, unrecorded)).toEqual({ bits: 8, groupSize: 64 });
    expect(await defaultBaseQuantization('none')).toBe('none');
  });

  it('a GGUF as stored: dense and Q4_0/Q8_0 linears need no re-quantization; K-quants get their widest bits at group 32', () => {
    const t = (name: string, typeName: string) => ({ name, typeName });
    const linears = (type: string) => ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((p) => t(`blk.0.${p}.weight`, type));
    const file = (tensors: Array<{ name: string; typeName: string }>) => ({ tensors }) as unknown as Parameters<typeof ggufStoredQuantization>[0];
    expect(ggufStoredQuantization(file([...linears('F16'), t('output.weight', 'F16'), t('token_embd.weight', 'Q4_K')]))).toBe('none');
    expect(ggufStoredQuantization(file([...linears('Q4_0'), t('output.weight', 'Q8_0')]))).toBe('none');
    expect(ggufStoredQuantization(file([...linears('Q4_0'), t('output.weight', 'Q6_K')]))).toEqual({ bits: 6, groupSize: 32 });
    expect(ggufStoredQuantization(file([...linears('Q4_K'), t('blk.0.ffn_down.weight', 'Q5_K')]))).toEqual({ bits: 5, groupSize: 32 });
  });

  it('loadModel: dense as stored without an adapter, the adapter\'s record with one, --bits over both', async () => {
    expect(await storage({})).toEqual({ bits: 0, group: 64, linear: { dense: 14 } });
    expect((await storage({ adapter: dense })).bits).toBe(0);
    expect(await storage({ adapter: fourBit })).toMatchObject({ bits: 4, group: 32, linear: { '4-bit g32': 14 } });
    expect((await storage({ adapter: unrecorded })).bits).toBe(0);
    expect(await storage({ adapter: dense, quantization: { bits: 8, groupSize: 64 } })).toMatchObject({ bits: 8, group: 64 });
    // A GGUF of F32 tensors is dense as stored too.
    expect((await storage({}, tiny.ggufPath)).bits).toBe(0);
  }, 120_000);

  // The HF folder has no tokenizer: the CLI runs on the same weights as a GGUF (an adapter is
  // matched by tensor names and shapes).
  it('generate --adapter runs on the base the adapter records', async () => {
    const run = async (adapter: string) => {
      const { stdout } = await promisify(execFile)(process.execPath, [
        '--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', tiny.ggufPath, '--adapter', adapter, '--prompt', 'hello world', '--max-tokens', '12', '--json',
      ]);
      return JSON.parse(stdout) as { prompt_tokens: number[]; tokens: number[] };
    };
    const expected = async (adapter: string, quantization: LoadModelOptions['quantization']) => {
      const model = await loadModel(tiny.ggufPath, { adapter, ...(quantization ? { quantization } : {}) });
      try {
        return (await generate(model.native, out.prompt_tokens, { maxTokens: 12, stopTokens: [tiny.vocab.eosId] })).tokens;
      } finally {
        model.dispose();
      }
    };
    const out = await run(dense);
    const denseTokens = await expected(dense, 'none');
    expect(out.tokens).toEqual(denseTokens);
    const out4 = await run(fourBit);
    expect(out4.tokens).toEqual(await expected(fourBit, { bits: 4, groupSize: 32 }));
    // The two bases give different continuations here, so the comparison above can tell them apart.
    expect(out4.tokens).not.toEqual(denseTokens);
  }, 180_000);
});
