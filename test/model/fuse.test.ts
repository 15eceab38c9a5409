import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFusedModel } from '../../lib/model/fuse.js';
import { loadModel, type LoadedModel, type LoadModelOptions } from '../../lib/model/load-model.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { matmulF64, relativeError, seededFloats } from '../helpers/reference.js';

const seq = Int32Array.from([1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64, 33]);
const batch = { shape: [1, seq.length] as [number, number], tokens: seq };
const rank = 4;
const alpha = 8;
const lora: LoadModelOptions['lora'] = { rank, alpha, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'], seed: 3 };

async function floats(t: Tensor): Promise<Float32Array> {
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

/** Gives every LoRA matrix seeded non-zero values (B too, so the adapter changes the model). */
async function randomizeAdapter(model: LoadedModel): Promise<Map<string, Float32Array>> {
  const params = await model.native.loraParameters();
  const values = new Map<string, Float32Array>();
  const updates: Record<string, Tensor> = {};
  let seed = 500;
  for (const [name, p] of Object.entries(params)) {
    const v = seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.3);
    values.set(name, v);
    updates[name] = await tensor(v, p.shape);
  }
  await model.native.setLoraParameters(updates);
  disposeAll(Object.values(updates), Object.values(params));
  return values;
}

describe('fuse: adapter merged into dense weights, written as an HF folder', () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 21 });
  });
  afterAll(async () => tiny?.cleanup());

  it('a merged q_proj equals W + scale·(A·B)ᵀ computed in float64', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: 'none', lora });
    try {
      const adapter = await randomizeAdapter(model);
      const a = adapter.get('model.layers.1.self_attn.q_proj.lora_a')!; // [in, r]
      const b = adapter.get('model.layers.1.self_attn.q_proj.lora_b')!; // [r, out]
      const w = tiny.weights.get('model.layers.1.self_attn.q_proj.weight')!; // [out, in]
      const [out, inF] = w.shape as [number, number];
      const ab = matmulF64(a, b, inF, rank, out);
      const expected = new Float64Array(out * inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) expected[o * inF + i] = w.values[o * inF + i]! + (alpha / rank) * ab[i * out + o]!;
      const merged = await floats(await model.native.denseWeight('model.layers.1.self_attn.q_proj.weight', 'float32'));
      expect(relativeError(merged, expected)).toBeLessThan(1e-6);
      // The adapter is not a no-op: the merged weight differs from the base clearly.
      expect(relativeError(w.values, expected)).toBeGreaterThan(1e-2);
    } finally {
      model.dispose();
    }
  });

  for (const source of ['hf', 'gguf'] as const) {
    it(`the fused ${source} model, reloaded with no adapter, gives the adapted model's logits`, async () => {
      const model = await loadModel(source === 'hf' ? tiny.hfDir : tiny.ggufPath, { quantization: 'none', lora });
      const out = join(tiny.root, `fused-${source}`);
      try {
        await randomizeAdapter(model);
        const adapted = await floats(await model.native.logits(batch));
        const base = await floats(await model.native.logits(batch, { lora: false }));
        const result = await writeFusedModel(model, out, { dtype: 'float32' });
        expect(result.files).toEqual(['model.safetensors']);
        const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
        expect(config.num_key_value_heads).toBe(2);
        const fused = await loadModel(out, { quantization: 'none' });
        try {
          expect(fused.architecture.ropeTraditional).toBe(false);
          const logits = await floats(await fused.native.logits(batch));
          expect(relativeError(logits, adapted)).toBeLessThan(1e-5);
          expect(relativeError(base, adapted)).toBeGreaterThan(1e-2);
          if (source === 'gguf') {
            // Unpermuted rows: with LoRA off, the GGUF model's q_proj comes back exactly as the HF weights.
            await model.native.setLoraEnabled(false);
            const dir = join(tiny.root, 'fused-gguf-base');
            await writeFusedModel(model, dir, { dtype: 'float32' });
            const plain = await loadModel(dir, { quantization: 'none' });
            try {
              for (const name of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.k_proj.weight']) {
                const got = await floats(await plain.native.denseWeight(name, 'float32'));
                expect(Buffer.from(got.buffer).equals(Buffer.from(tiny.weights.get(name)!.values.buffer))).toBe(true);
              }
            } finally {
              plain.dispose();
            }
          }
        } finally {
          fused.dispose();
        }
      } finally {
        model.dispose();
      }
    });
  }

  it('merges into the dequantized 4-bit base, in shards with an index, and refuses to overwrite', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 32 }, lora });
    const out = join(tiny.root, 'fused-q4');
    try {
      await randomizeAdapter(model);
      const adapted = await floats(await model.native.logits(batch));
      const result = await writeFusedModel(model, out, { dtype: 'float32', shardBytes: 64 * 1024 });
      expect(result.files.length).toBeGreaterThan(1);
      expect(result.files[0]).toBe(`model-00001-of-${String(result.files.length).padStart(5, '0')}.safetensors`);
      const index = JSON.parse(await readFile(join(out, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
      expect(Object.keys(index.weight_map)).toHaveLength(result.tensors);
      const fused = await loadModel(out, { quantization: 'none' });
      try {
        expect(relativeError(await floats(await fused.native.logits(batch)), adapted)).toBeLessThan(1e-5);
      } finally {
        fused.dispose();
      }
      await expect(writeFusedModel(model, out)).rejects.toThrow(/already exists/);
      // Nothing temporary is left beside the output.
      expect((await readdir(tiny.root)).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    } finally {
      model.dispose();
    }
  });
});

describe('mlx-qlora fuse', () => {
  it('writes the merged folder from an adapter on disk; the result gives the adapted logits', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { saveAdapterFolder } = await import('../helpers/adapter-folder.js');
    const tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 23 });
    try {
      const model = await loadModel(tiny.hfDir, { quantization: 'none', lora });
      let adapted: Float32Array;
      const adapterDir = join(tiny.root, 'adapter');
      try {
        await randomizeAdapter(model);
        adapted = await floats(await model.native.logits(batch));
        await saveAdapterFolder(model, adapterDir, lora!);
      } finally {
        model.dispose();
      }
      const out = join(tiny.root, 'fused-cli');
      const { stdout } = await promisify(execFile)(process.execPath, [
        '--import', 'tsx', 'lib/cli/main.ts', 'fuse', '--model', tiny.hfDir, '--adapter', adapterDir, '--out', out, '--dtype', 'float32',
      ]);
      expect(stdout).toMatch(/^fused \d+ tensors/);
      expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
      const fused = await loadModel(out, { quantization: 'none' });
      try {
        expect(relativeError(await floats(await fused.native.logits(batch)), adapted)).toBeLessThan(1e-5);
      } finally {
        fused.dispose();
      }
    } finally {
      await tiny.cleanup();
    }
  }, 60_000);
});
