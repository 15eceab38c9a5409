/**
 * The model GGUF writer beyond float exports: quantized files llama.cpp loads and runs, memory that
 * stays at a few tensors however deep the model is, sources it merges from (sharded bf16 safetensors,
 * a quantized GGUF), and bad input that names the file and leaves nothing at the output path.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeGgufModel } from '../../lib/export/gguf-model.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes, readTensorFloat32 } from '../../lib/gguf/tensor-data.js';
import { generate } from '../../lib/model/generate.js';
import { loadModel } from '../../lib/model/load-model.js';
import { native } from '../../lib/native.js';
import { dequantize, disposeAll, quantize, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { BUILTIN_TEMPLATES } from '../../lib/tokenizer/builtin-templates.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { gatherRows, makeTinyModel, qkPermutation, type TinyModel } from '../fixtures/tiny-model.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { hfToGgufName } from '../../lib/gguf/tensor-names.js';
import { tempDir } from '../helpers/temp-dir.js';
import { addTinyTokenizer, llamaCppLogProbs, logSoftmax, makeAdapter } from './gguf-model-fixtures.js';

const PROMPTS = [
  [1, 17, 42, 5, 260, 99, 3, 77],
  [1, 300, 301, 45, 46, 47],
];

async function lastLogits(base: string, adapter: string | undefined, prompt: number[]): Promise<Float32Array> {
  const model = await loadModel(base, { ...(adapter ? { adapter } : {}), quantization: 'none' });
  try {
    const t = await model.native.logits({ shape: [1, prompt.length], tokens: Int32Array.from(prompt) });
    const v = (await toTypedArray(t)) as Float32Array;
    t.dispose();
    return v.slice(v.length - v.length / prompt.length);
  } finally {
    model.dispose();
  }
}

/** Over the entries llama.cpp's softmax did not underflow to zero. */
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(b[i]!)) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Pearson correlation over the entries llama.cpp's softmax did not underflow to zero. */
function correlation(a: Float32Array, b: Float32Array): number {
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(b[i]!)) continue;
    n++;
    sa += a[i]!;
    sb += b[i]!;
  }
  const ma = sa / n;
  const mb = sb / n;
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(b[i]!)) continue;
    cov += (a[i]! - ma) * (b[i]! - mb);
    va += (a[i]! - ma) ** 2;
    vb += (b[i]! - mb) ** 2;
  }
  return cov / Math.sqrt(va * vb);
}

function range(a: Float32Array): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return hi - lo;
}

describe('quantized model GGUFs in llama.cpp', () => {
  let tiny: TinyModel;
  let dir: string;
  let adapter: string;
  beforeAll(async () => {
    dir = tempDir('gguf-model-q-');
    // Widths of 256 so every K-quant applies. Two layers: a random decoder amplifies every
    // perturbation layer by layer (llama.cpp also rounds activations to 8 bits in quantized dot
    // products), and deeper ones drift far from any float forward.
    tiny = await makeTinyModel({ layers: 2, hidden: 256, heads: 4, kvHeads: 2, intermediate: 512, vocab: 384, seed: 41, dir: join(dir, 'tiny') });
    await addTinyTokenizer(tiny.hfDir, tiny.ggufPath);
    adapter = join(dir, 'adapter');
    await makeAdapter(tiny.hfDir, adapter, 900);
  }, 180_000);
  afterAll(async () => tiny?.cleanup());

  for (const type of ['f32', 'q8_0', 'q4_0', 'q4_k_m'] as const) {
    it(`${type}: llama.cpp loads it and reads it as our decoder does; its logits follow our F32 forward`, async () => {
      const out = join(dir, `${type}.gguf`);
      await writeGgufModel({ source: tiny.hfDir, adapter }, out, { type });
      const file = await readGguf(out);
      expect(file.metadata.get('general.quantization_version')).toBe(type === 'f32' ? undefined : 2);
      const types = new Set(file.tensors.map((t) => t.typeName));
      expect(types.has({ f32: 'F32', q8_0: 'Q8_0', q4_0: 'Q4_0', q4_k_m: 'Q4_K' }[type])).toBe(true);
      const theirRows = await llamaCppLogProbs(out, PROMPTS);
      const oracle = await openLlamaCppOracle(out);
      try {
        for (const [n, p] of PROMPTS.entries()) {
          const ours = await lastLogits(tiny.hfDir, adapter, p);
          const theirs = theirRows[PROMPTS.slice(0, n + 1).reduce((a, q) => a + q.length, 0) - 1]!;
          const gap = maxAbsDiff(logSoftmax([ours])[0]!, theirs) / range(ours);
          const oursOfFile = await lastLogits(out, undefined, p);
          const fileGap = maxAbsDiff(logSoftmax([oursOfFile])[0]!, theirs) / range(oursOfFile);
          const r = correlation(logSoftmax([ours])[0]!, theirs);
          console.log(`${type}: max |Δlogit| / range ${gap.toExponential(3)} vs F32 (correlation ${r.toFixed(5)}), ${fileGap.toExponential(3)} vs our forward of the file`);
          // llama.cpp reads the file as our decoder does, up to its 8-bit rounding of activations in
          // quantized dot products (measured ≤ 6% of the range at the worst of 384 logits); a
          // misplaced block or row would put the two forwards on unrelated scales (gap ≈ 1).
          expect(fileGap).toBeLessThan(type === 'f32' ? 1e-4 : 0.1);
          // Against the unquantized forward: the logits stay correlated (measured ≥ 0.996 for Q8_0;
          // 0.67–0.90 for 4 bits, which on random Gaussian weights errs by ~10% of each weight); a
          // wrong row order or block layout gives unrelated logits, correlated near 0.
          expect(r).toBeGreaterThan(type === 'f32' ? 0.99999 : type === 'q8_0' ? 0.99 : 0.5);
        }
        const theirs = await oracle.greedy(PROMPTS[0]!, 4);
        expect(theirs).toHaveLength(4);
        if (type === 'q8_0') {
          const model = await loadModel(tiny.hfDir, { adapter, quantization: 'none' });
          try {
            expect((await generate(model.native, PROMPTS[0]!, { maxTokens: 4 })).tokens.slice(0, 2)).toEqual(theirs.slice(0, 2));
          } finally {
            model.dispose();
          }
        }
      } finally {
        await oracle.dispose();
      }
    }, 120_000);
  }
});

describe('streaming', () => {
  let tiny: TinyModel;
  let dir: string;
  let adapter: string;
  beforeAll(async () => {
    dir = tempDir('gguf-model-mem-');
    tiny = await makeTinyModel({ layers: 8, hidden: 256, heads: 4, kvHeads: 2, intermediate: 512, vocab: 384, seed: 45, dir: join(dir, 'tiny') });
    await addTinyTokenizer(tiny.hfDir, tiny.ggufPath);
    adapter = join(dir, 'adapter');
    await makeAdapter(tiny.hfDir, adapter, 950);
  }, 180_000);
  afterAll(async () => tiny?.cleanup());

  it('holds a few tensors at a time: MLX peak memory and the JS buffers it keeps stay under 3 weights, however many layers', async () => {
    const out = join(dir, 'stream.gguf');
    const largest = 512 * 256 * 4; // ffn_gate/ffn_up, the biggest matrices
    const total = (await stat(join(tiny.hfDir, 'model.safetensors'))).size;
    await native().clearCache();
    await native().resetPeakMemory();
    // JS buffers still reachable after each tensor is written (a full GC first).
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('run with --expose-gc (vitest.config.ts sets it)');
    const kept: number[] = [];
    await writeGgufModel({ source: tiny.hfDir, adapter }, out, {
      type: 'f32',
      onProgress: () => {
        gc();
        kept.push(process.memoryUsage().arrayBuffers);
      },
    });
    const { peak } = await native().memory();
    // The first sample can still count buffers from before the export whose native finalizers
    // had not run yet (they run after the GC, not in it); from the second tensor on it is steady.
    const settled = kept.slice(1);
    const growth = Math.max(...settled) - Math.min(...settled);
    console.log(`peak MLX memory ${peak} B; JS buffers vary by ${growth} B across tensors; largest tensor ${largest} B; model ${total} B`);
    expect(total).toBeGreaterThan(15 * largest);
    expect(peak).toBeLessThan(3 * largest);
    // Fixed buffers (the file writer's write buffer, the adapter's matrices) are there from the
    // first tensor on; what a tensor adds is gone by the next, so nothing grows with depth.
    expect(growth).toBeLessThan(3 * largest);
    expect(kept.length).toBe((await readGguf(out)).tensors.length);
  }, 120_000);
});

describe('sources and bad input', () => {
  let tiny: TinyModel;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('gguf-model-src-');
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 384, seed: 43, dtype: 'bf16', shards: 3, ggufType: 'Q8_0', dir: join(dir, 'tiny') });
    // An HF source needs its tokenizer.json; this one has the tiny GGUF's pieces and merges.
    await addTinyTokenizer(tiny.hfDir, tiny.ggufPath);
  }, 60_000);
  afterAll(async () => tiny?.cleanup());

  it('sharded bf16 safetensors and a Q8_0 GGUF give the same F32 tensors (q/k rows permuted for the HF one)', async () => {
    const fromHf = join(dir, 'from-hf.gguf');
    const fromGguf = join(dir, 'from-gguf.gguf');
    await writeGgufModel({ source: tiny.hfDir }, fromHf, { type: 'f32' });
    await writeGgufModel({ source: tiny.ggufPath }, fromGguf, { type: 'f32' });
    const a = await readGguf(fromHf);
    const b = await readGguf(fromGguf);
    expect(a.tensors.map((t) => t.name).sort()).toEqual(b.tensors.map((t) => t.name).sort());
    for (const t of a.tensors) {
      const x = await readTensorFloat32(a, t);
      const y = await readTensorFloat32(b, t.name);
      expect(Buffer.from(x.buffer).equals(Buffer.from(y.buffer)), t.name).toBe(true);
    }
    for (const key of ['llama.block_count', 'llama.attention.head_count_kv', 'llama.rope.freq_base', 'llama.attention.layer_norm_rms_epsilon', 'llama.vocab_size']) {
      expect(a.metadata.get(key), key).toBe(b.metadata.get(key));
      expect(a.metadataTypes.get(key), key).toBe(b.metadataTypes.get(key));
    }
    expect(a.metadata.get('tokenizer.ggml.tokens')).toEqual(b.metadata.get('tokenizer.ggml.tokens'));
  });

  it('a LoadedModel with its adapter gives the tensors the streaming export merges', async () => {
    const adapter = join(dir, 'adapter');
    await makeAdapter(tiny.hfDir, adapter, 990);
    const streamed = join(dir, 'streamed.gguf');
    const loaded = join(dir, 'loaded.gguf');
    await writeGgufModel({ source: tiny.hfDir, adapter }, streamed, { type: 'f32' });
    const model = await loadModel(tiny.hfDir, { adapter, quantization: 'none' });
    try {
      await writeGgufModel(model, loaded, { type: 'f32' });
    } finally {
      model.dispose();
    }
    const a = await readGguf(streamed);
    const b = await readGguf(loaded);
    expect(b.tensors.map((t) => t.name)).toEqual(a.tensors.map((t) => t.name));
    for (const t of a.tensors) {
      const x = await readTensorFloat32(a, t);
      const y = await readTensorFloat32(b, t.name);
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < x.length; i++) {
        diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
        scale = Math.max(scale, Math.abs(x[i]!));
      }
      expect(diff, t.name).toBeLessThan(1e-6 * scale);
    }
    // The adapter is not a no-op: the merged weight is not the base's.
    expect(Buffer.from((await readTensorFloat32(a, 'blk.0.attn_v.weight')).buffer).equals(Buffer.from(tiny.weights.get('model.layers.0.self_attn.v_proj.weight')!.values.buffer))).toBe(false);
  }, 60_000);

  it('an Ollama model exports as its GGUF blob does, with the Jinja template its Go template matches', async () => {
    const models = join(dir, 'ollama-models');
    const blob = await readFile(tiny.ggufPath);
    const template = '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n';
    const layer = async (data: string | Uint8Array, mediaType: string) => {
      const hex = createHash('sha256').update(data).digest('hex');
      await mkdir(join(models, 'blobs'), { recursive: true });
      await writeFile(join(models, 'blobs', `sha256-${hex}`), data);
      return { mediaType, digest: `sha256:${hex}`, size: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength };
    };
    const manifest = join(models, 'manifests', 'registry.ollama.ai', 'library', 'tiny-chat', 'latest');
    await mkdir(dirname(manifest), { recursive: true });
    const config = { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 };
    const layers = [await layer(blob, 'application/vnd.ollama.image.model'), await layer(template, 'application/vnd.ollama.image.template')];
    await writeFile(manifest, JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config, layers }));
    const fromOllama = join(dir, 'from-ollama.gguf');
    const fromFile = join(dir, 'from-file.gguf');
    await writeGgufModel({ source: 'tiny-chat', ollamaModelsDir: models }, fromOllama, { type: 'f16', name: 'tuned' });
    await writeGgufModel({ source: tiny.ggufPath }, fromFile, { type: 'f16' });
    const a = await readGguf(fromOllama);
    const b = await readGguf(fromFile);
    expect(a.metadata.get('general.name')).toBe('tuned');
    expect(a.metadata.get('tokenizer.chat_template')).toBe(BUILTIN_TEMPLATES.chatml);
    expect(b.metadata.has('tokenizer.chat_template')).toBe(false);
    expect(a.metadata.get('general.file_type')).toBe(1);
    for (const t of a.tensors) expect(Buffer.from(await readTensorBytes(a, t)).equals(Buffer.from(await readTensorBytes(b, t.name))), t.name).toBe(true);
    // A template given to the export replaces the source's.
    const own = join(dir, 'own-template.gguf');
    await writeGgufModel({ source: 'tiny-chat', ollamaModelsDir: models }, own, { type: 'f16', chatTemplate: '{{ messages }}' });
    expect((await readGguf(own)).metadata.get('tokenizer.chat_template')).toBe('{{ messages }}');
  });

  it('an MLX-quantized folder (mixed bits and groups) exports its dequantized weights exactly', async () => {
    const mlxDir = join(dir, 'mlx');
    await mkdir(mlxDir, { recursive: true });
    const layoutOf = (name: string) => (name === 'model.embed_tokens.weight' ? { bits: 8, groupSize: 64 } : name.includes('down_proj') ? { bits: 6, groupSize: 32 } : { bits: 4, groupSize: 32 });
    await writeFile(join(mlxDir, 'config.json'), JSON.stringify({ ...tiny.hfConfig, quantization: { group_size: 32, bits: 4 } }));
    await copyFile(join(tiny.hfDir, 'tokenizer.json'), join(mlxDir, 'tokenizer.json'));
    const tensors: Record<string, Tensor> = {};
    const expected = new Map<string, Float32Array>();
    for (const [name, w] of tiny.weights) {
      const t = await tensor(Float32Array.from(w.values), w.shape);
      if (!(name.endsWith('_proj.weight') || name === 'model.embed_tokens.weight' || name === 'lm_head.weight')) {
        tensors[name] = t;
        expected.set(name, w.values);
        continue;
      }
      const q = await quantize(t, layoutOf(name));
      const prefix = name.slice(0, -'.weight'.length);
      Object.assign(tensors, { [`${prefix}.weight`]: q.wq, [`${prefix}.scales`]: q.scales, [`${prefix}.biases`]: q.biases });
      const d = await dequantize(q, { ...layoutOf(name), dtype: 'float32' });
      let values = (await toTypedArray(d)) as Float32Array;
      d.dispose();
      t.dispose();
      const heads = name.includes('q_proj') ? 4 : name.includes('k_proj') ? 2 : 0;
      if (heads) values = gatherRows(values, w.shape[0]!, qkPermutation(w.shape[0]!, heads));
      expected.set(name, values);
    }
    await saveSafetensors(join(mlxDir, 'model.safetensors'), tensors, { format: 'mlx' });
    disposeAll(Object.values(tensors));
    const out = join(dir, 'from-mlx.gguf');
    await writeGgufModel({ source: mlxDir }, out, { type: 'f32' });
    const file = await readGguf(out);
    for (const [name, values] of expected) {
      const got = await readTensorFloat32(file, hfToGgufName(name)!);
      expect(Buffer.from(got.buffer).equals(Buffer.from(values.buffer)), name).toBe(true);
    }
  });

  it('a Q8_0 GGUF base with an adapter trained on it: the F32 export gives our adapted forward in llama.cpp', async () => {
    const adapter = join(dir, 'adapter-q8');
    await makeAdapter(tiny.ggufPath, adapter, 1200);
    const out = join(dir, 'fused-q8-base.gguf');
    await writeGgufModel({ source: tiny.ggufPath, adapter }, out, { type: 'f32' });
    const theirs = await llamaCppLogProbs(out, PROMPTS);
    let row = 0;
    for (const p of PROMPTS) {
      row += p.length;
      const ours = await lastLogits(tiny.ggufPath, adapter, p);
      const base = await lastLogits(tiny.ggufPath, undefined, p);
      const gap = maxAbsDiff(logSoftmax([ours])[0]!, theirs[row - 1]!) / range(ours);
      console.log(`Q8_0 base + adapter: max |Δlogit| / range ${gap.toExponential(3)}`);
      expect(gap).toBeLessThan(1e-3);
      // The adapter moves the logits far more than that.
      expect(maxAbsDiff(logSoftmax([base])[0]!, theirs[row - 1]!) / range(ours)).toBeGreaterThan(1e-2);
    }
  }, 60_000);

  it('a missing base is an error naming it; nothing is written', async () => {
    const out = join(dir, 'missing.gguf');
    await expect(writeGgufModel({ source: join(dir, 'no-such-model') }, out, { type: 'f16' })).rejects.toThrow(/no-such-model/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });

  it('a truncated source GGUF is an error naming the file; nothing is written', async () => {
    const broken = join(dir, 'truncated.gguf');
    await copyFile(tiny.ggufPath, broken);
    await truncate(broken, (await stat(broken)).size - 1000);
    const out = join(dir, 'from-truncated.gguf');
    await expect(writeGgufModel({ source: broken }, out, { type: 'f16' })).rejects.toThrow(/truncated\.gguf.*truncated/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });

  it('an aborted export leaves nothing at the output path', async () => {
    const out = join(dir, 'aborted.gguf');
    const controller = new AbortController();
    const run = writeGgufModel({ source: tiny.ggufPath }, out, {
      type: 'f32',
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done === 3) controller.abort();
      },
    });
    await expect(run).rejects.toThrow(/abort/i);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });
});

describe('HF configs llama.cpp must be told about', () => {
  const variants = [
    { what: 'linear RoPE scaling', tied: false, scaling: { type: 'linear', factor: 4 } },
    { what: 'llama3 RoPE scaling (rope_freqs tensor)', tied: false, scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } },
    { what: 'tied embeddings (no output.weight)', tied: true, scaling: null },
  ];
  for (const v of variants) {
    it(`${v.what}: llama.cpp's log-probs equal our forward`, async () => {
      const dir = tempDir('gguf-model-cfg-');
      const tiny = await makeTinyModel({ arch: 'llama', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 384, seed: 47, tiedEmbeddings: v.tied, dir: join(dir, 'tiny') });
      await addTinyTokenizer(tiny.hfDir, tiny.ggufPath);
      const configPath = join(tiny.hfDir, 'config.json');
      await writeFile(configPath, JSON.stringify({ ...tiny.hfConfig, rope_scaling: v.scaling }));
      const out = join(dir, 'model.gguf');
      await writeGgufModel({ source: tiny.hfDir }, out, { type: 'f32' });
      const file = await readGguf(out);
      expect(file.tensors.some((t) => t.name === 'output.weight')).toBe(!v.tied);
      expect(file.tensors.some((t) => t.name === 'rope_freqs.weight')).toBe(v.scaling?.rope_type === 'llama3');
      const theirs = await llamaCppLogProbs(out, PROMPTS);
      const rows: Float32Array[] = [];
      for (const p of PROMPTS) {
        const model = await loadModel(tiny.hfDir, { quantization: 'none' });
        try {
          const t = await model.native.logits({ shape: [1, p.length], tokens: Int32Array.from(p) });
          const values = (await toTypedArray(t)) as Float32Array;
          t.dispose();
          for (let i = 0; i < p.length; i++) rows.push(values.slice((i * values.length) / p.length, ((i + 1) * values.length) / p.length));
        } finally {
          model.dispose();
        }
      }
      const ours = logSoftmax(rows);
      let gap = 0;
      ours.forEach((row, r) => (gap = Math.max(gap, maxAbsDiff(row, theirs[r]!) / range(rows[r]!))));
      console.log(`${v.what}: max |Δlogit| / range ${gap.toExponential(3)}`);
      expect(gap).toBeLessThan(1e-3);
    }, 60_000);
  }
});

