import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAdapterGguf } from '../../lib/export/adapter-gguf.js';
import { writePeftAdapter } from '../../lib/export/peft.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { readAdapter } from '../../lib/model/adapter-weights.js';
import { architectureFromGguf } from '../../lib/model/architecture.js';
import { loadModel } from '../../lib/model/load-model.js';
import type { LoraSettings } from '../../lib/model/lora-options.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { writeSafetensors, type SafetensorsTensor } from '../fixtures/safetensors.js';
import { makeTinyModel, qkPermutation, type TinyModel } from '../fixtures/tiny-model.js';
import { saveAdapterFolder } from '../helpers/adapter-folder.js';
import { seededFloats } from '../helpers/reference.js';
import { tempDir } from '../helpers/temp-dir.js';

const lora: LoraSettings = { rank: 4, alpha: 8, targets: 'all-linear' };
const seq = Int32Array.from([1, 17, 42, 5, 260, 99, 3, 77, 150]);
const batch = { shape: [1, seq.length] as [number, number], tokens: seq };

async function makeRandomAdapter(source: string, dir: string, seed: number): Promise<void> {
  const model = await loadModel(source, { quantization: 'none', lora });
  try {
    const params = await model.native.loraParameters();
    const updates: Record<string, Tensor> = {};
    for (const [name, p] of Object.entries(params)) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.25), p.shape);
    await model.native.setLoraParameters(updates);
    disposeAll(Object.values(updates), Object.values(params));
    await saveAdapterFolder(model, dir, lora);
  } finally {
    model.dispose();
  }
}

async function logitsWith(source: string, adapter: string): Promise<Float32Array> {
  const model = await loadModel(source, { quantization: 'none', adapter });
  try {
    const t = await model.native.logits(batch);
    try {
      return (await toTypedArray(t)) as Float32Array;
    } finally {
      t.dispose();
    }
  } finally {
    model.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('PEFT adapters written', () => {
  let tiny: TinyModel;
  let root: string;
  let hfAdapter: string;
  let ggufAdapter: string;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 17 });
    root = tempDir('adapter-peft-');
    hfAdapter = join(root, 'made-on-hf');
    ggufAdapter = join(root, 'made-on-gguf');
    await makeRandomAdapter(tiny.hfDir, hfAdapter, 7);
    await makeRandomAdapter(tiny.ggufPath, ggufAdapter, 7);
  }, 120_000);
  afterAll(async () => tiny?.cleanup());

  it('round trip: ours → PEFT → read back gives the same tensors bit for bit and the same logits', async () => {
    const out = join(root, 'peft-from-hf');
    await writePeftAdapter(hfAdapter, out, { baseModel: 'org/tiny-model' });
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      use_rslora: false,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      layers_to_transform: null,
      lora_dropout: 0,
      bias: 'none',
      fan_in_fan_out: false,
      base_model_name_or_path: 'org/tiny-model',
    });
    const bytes = await readFile(join(out, 'adapter_model.safetensors'));
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']!.dtype).toBe('F32');
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']!.shape).toEqual([4, 64]);
    expect(header['base_model.model.model.layers.1.mlp.down_proj.lora_B.weight']!.shape).toEqual([64, 4]);

    const back = await readAdapter(out);
    const original = await readAdapter(hfAdapter);
    expect(back.format).toBe('peft');
    expect(back.scale).toBe(original.scale);
    expect([...back.matrices.keys()]).toEqual([...original.matrices.keys()]);
    for (const [name, m] of original.matrices) {
      expect(back.matrices.get(name)!.shape).toEqual(m.shape);
      expect(Buffer.from(back.matrices.get(name)!.values.buffer).equals(Buffer.from(m.values.buffer))).toBe(true);
    }
    expect(await logitsWith(tiny.hfDir, out)).toEqual(await logitsWith(tiny.hfDir, hfAdapter));
  });

  it('an adapter trained on a GGUF base is written in HF row order: on the HF base it gives the GGUF-base logits', async () => {
    const out = join(root, 'peft-from-gguf');
    await writePeftAdapter(ggufAdapter, out); // the base is found from the adapter's config
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.base_model_name_or_path).toBe(tiny.ggufPath);
    const peft = await readAdapter(out);
    const own = await readAdapter(ggufAdapter);
    expect(own.rowOrder).toBe('gguf');
    // B's q outputs go back through the fixture's own permutation: GGUF column g is HF column map[g].
    const b = peft.matrices.get('model.layers.1.self_attn.q_proj.lora_b')!.values;
    const bOwn = own.matrices.get('model.layers.1.self_attn.q_proj.lora_b')!.values;
    const map = qkPermutation(64, 4);
    for (let r = 0; r < 4; r++) for (let g = 0; g < 64; g++) expect(b[r * 64 + map[g]!]).toBe(bOwn[r * 64 + g]);
    expect(peft.matrices.get('model.layers.1.self_attn.v_proj.lora_b')!.values).toEqual(own.matrices.get('model.layers.1.self_attn.v_proj.lora_b')!.values);

    const onHf = await logitsWith(tiny.hfDir, out);
    const onGguf = await logitsWith(tiny.ggufPath, ggufAdapter);
    const range = Math.max(...onGguf) - Math.min(...onGguf);
    expect(maxAbsDiff(onHf, onGguf) / range).toBeLessThan(1e-4);
    // Our own GGUF-order folder is reordered when it is loaded onto the HF base, too.
    expect(maxAbsDiff(await logitsWith(tiny.hfDir, ggufAdapter), onGguf) / range).toBeLessThan(1e-4);
    // The adapter GGUF written from the PEFT folder is the adapter GGUF written from ours, byte for byte.
    const base = architectureFromGguf(await readGguf(tiny.ggufPath));
    await writeAdapterGguf(out, base, join(root, 'from-peft.gguf'), { name: 'x' });
    await writeAdapterGguf(ggufAdapter, base, join(root, 'from-ours.gguf'), { name: 'x' });
    expect((await readFile(join(root, 'from-peft.gguf'))).equals(await readFile(join(root, 'from-ours.gguf')))).toBe(true);
  });

  it('keeps rsLoRA alpha and layers_to_transform of a PEFT input', async () => {
    const input = join(root, 'rslora-in');
    await mkdir(input);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const [path, inDim, outDim] of [['self_attn.q_proj', 64, 64], ['mlp.down_proj', 128, 64]] as const) {
      tensors.set(`base_model.model.model.layers.1.${path}.lora_A.weight`, { shape: [8, inDim], values: seededFloats(8 * inDim, inDim) });
      tensors.set(`base_model.model.model.layers.1.${path}.lora_B.weight`, { shape: [outDim, 8], values: seededFloats(8 * outDim, outDim + 1) });
    }
    await writeSafetensors(join(input, 'adapter_model.safetensors'), tensors, 'F32');
    await writeFile(join(input, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 12, use_rslora: true, target_modules: ['down_proj', 'q_proj'], layers_to_transform: 1, base_model_name_or_path: 'org/base' }));
    const out = join(root, 'rslora-out');
    await writePeftAdapter(input, out);
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ r: 8, lora_alpha: 12, use_rslora: true, layers_to_transform: [1], target_modules: ['q_proj', 'down_proj'], base_model_name_or_path: 'org/base' });
    const back = await readAdapter(out);
    expect(back.scale).toBe(12 / Math.sqrt(8));
    // In an adapter GGUF, llama.cpp's alpha/r must give the same scale: alpha = scale·r.
    const base = architectureFromGguf(await readGguf(tiny.ggufPath));
    const gguf = await readGguf((await writeAdapterGguf(out, base, join(root, 'rslora.gguf'))).path);
    expect(gguf.metadata.get('adapter.lora.alpha')).toBe(Math.fround((12 / Math.sqrt(8)) * 8));
    expect(gguf.tensors.map((t) => t.name)).toEqual(['blk.1.attn_q.weight.lora_a', 'blk.1.attn_q.weight.lora_b', 'blk.1.ffn_down.weight.lora_a', 'blk.1.ffn_down.weight.lora_b']);
  });

  it('never replaces an existing folder unasked, and leaves nothing behind on failure', async () => {
    const out = join(root, 'exists');
    await mkdir(out);
    await expect(writePeftAdapter(hfAdapter, out)).rejects.toThrow(`${out} already exists`);
    const bad = join(root, 'no-adapter');
    await expect(writePeftAdapter(bad, join(root, 'never'))).rejects.toThrow(bad);
    expect((await readdir(root)).filter((f) => f.includes('never'))).toEqual([]);
    await writePeftAdapter(hfAdapter, out, { overwrite: true });
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});
