/**
 * Every native entry point, called with wrong argument types and values, throws or rejects with
 * an Error and leaves the process (and the MLX thread) working. The entry points are enumerated
 * from the addon object and the Model, Tensor and Generator prototypes at run time, so a new
 * export is swept too: with generic bad arguments at first, and argument by argument once it has
 * a valid call in `validCalls` below.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native, type NativeGenerator, type NativeModel, type NativeTensor } from '../../lib/native.js';

type Fn = (...args: unknown[]) => unknown;
type Outcome = 'returned' | 'threw' | 'resolved' | 'rejected';

const addon = native();
const exportsRecord = addon as unknown as Record<string, unknown>;

const hidden = 64;
const inter = 128;
const vocab = 32;
const config = { vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 32 };
const build = { quantBits: 0, quantGroupSize: 64, computeDtype: 'float32', kernel: 'dequantize-matmul' };
const lora = { rank: 2, scale: 1, dropout: 0, targets: ['q_proj', 'v_proj'], numLayers: 1, seed: 1, dtype: 'float32' };
const weightShapes: Record<string, number[]> = {
  'model.embed_tokens.weight': [vocab, hidden],
  'model.norm.weight': [hidden],
  'lm_head.weight': [vocab, hidden],
  'model.layers.0.input_layernorm.weight': [hidden],
  'model.layers.0.post_attention_layernorm.weight': [hidden],
  'model.layers.0.self_attn.q_proj.weight': [64, hidden],
  'model.layers.0.self_attn.k_proj.weight': [32, hidden],
  'model.layers.0.self_attn.v_proj.weight': [32, hidden],
  'model.layers.0.self_attn.o_proj.weight': [hidden, 64],
  'model.layers.0.mlp.gate_proj.weight': [inter, hidden],
  'model.layers.0.mlp.up_proj.weight': [inter, hidden],
  'model.layers.0.mlp.down_proj.weight': [hidden, inter],
};

async function tinyModel(): Promise<NativeModel> {
  const model = await addon.createModel(config as never, build as never, lora as never);
  let seed = 0;
  for (const [name, shape] of Object.entries(weightShapes)) {
    const t = await addon.randomNormal(shape, 'float32', ++seed, name.endsWith('norm.weight') ? 1 : 0, 0.1);
    await model.setWeight(name, t);
    t.dispose();
  }
  await model.finalize();
  return model;
}

/** The outcome of one call; anything thrown or rejected must be an Error. */
async function outcomeOf(label: string, call: () => unknown): Promise<Outcome> {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    expect(error, `${label} threw a non-Error`).toBeInstanceOf(Error);
    return 'threw';
  }
  if (!(result instanceof Promise)) return 'returned';
  try {
    await result;
    return 'resolved';
  } catch (error) {
    expect(error, `${label} rejected with a non-Error`).toBeInstanceOf(Error);
    return 'rejected';
  }
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'symbol' || typeof v === 'bigint' || typeof v === 'function') return typeof v;
  if (Array.isArray(v)) return `[${v.map(describeValue).join(', ')}]`;
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (v !== null && typeof v === 'object') return (v as { constructor?: { name?: string } }).constructor?.name ?? 'object';
  return String(v);
}

interface Fixtures {
  model: NativeModel;
  generator: NativeGenerator;
  t22: NativeTensor;
  w: NativeTensor;
  quantized: [NativeTensor, NativeTensor, NativeTensor];
  x: NativeTensor;
  norm: NativeTensor;
  disposed: NativeTensor;
  file: string;
  dir: string;
  memoryLimit: number;
}

let f: Fixtures;
const originalCwd = process.cwd();

/** Values no argument should accept in their place, or should survive when it does. */
function badValues(): unknown[] {
  return [
    undefined, null, 'fp16', '2', '', -1, 0, 0.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, 1e308, 10n, Symbol('bad'), () => 0,
    {}, [], [-1], ['2'], [2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1], [1 << 20, 1 << 20], new Float32Array(3), new Int32Array([1e9]),
    { tokens: new Int32Array([1e9]), shape: [1, 1] }, f.disposed, f.norm, f.model,
  ];
}

function batch(tokens: number[]): { shape: [number, number]; tokens: Int32Array; targets: Int32Array; mask: Float32Array } {
  return {
    shape: [1, tokens.length],
    tokens: Int32Array.from(tokens),
    targets: Int32Array.from(tokens, (t) => (t + 1) % vocab),
    mask: new Float32Array(tokens.length).fill(1),
  };
}

/** A call each entry point accepts; the sweep replaces one argument (or one option) at a time. */
function validCalls(): Record<string, () => unknown[]> {
  return {
    fromBytes: () => [new Float32Array(4), [2, 2], 'float32'],
    toBytes: () => [f.t22],
    matmul: () => [f.t22, f.t22],
    add: () => [f.t22, f.t22],
    astype: () => [f.t22, 'float16'],
    quantize: () => [f.w, 64, 4],
    dequantize: () => [...f.quantized, 64, 4, 'float32'],
    quantizedMatmul: () => [f.x, ...f.quantized, true, 64, 4],
    randomNormal: () => [[2, 2], 'float32', 1, 0, 1],
    device: () => [],
    useDevice: () => ['cpu'],
    memory: () => [],
    setMemoryLimit: () => [f.memoryLimit],
    setCacheLimit: () => [1 << 20],
    resetPeakMemory: () => [],
    clearCache: () => [],
    loadSafetensors: () => [f.file],
    saveSafetensors: () => [join(f.dir, 'out.safetensors'), { a: f.t22 }, { key: 'value' }],
    tensorFromFile: () => [f.file, 0, 16, 'float32', [2, 2]],
    createModel: () => [{ ...config }, { ...build }, { ...lora }],
    ggufEncode: () => [f.w, 'Q8_0', 1],
    mlxThreadId: () => [],
    externalMemory: () => [],
    'Model.setWeight': () => ['model.norm.weight', f.norm],
    'Model.setQuantizedWeight': () => ['model.layers.0.mlp.up_proj.weight', ...f.quantized, 4, 64],
    'Model.loadSafetensors': () => [f.file],
    'Model.finalize': () => [],
    'Model.logits': () => [batch([1, 2, 3]), { lora: true }],
    'Model.loss': () => [batch([1, 2, 3])],
    'Model.lossAndGrads': () => [batch([1, 2, 3]), { dropoutSeed: 1, checkpoint: false }],
    'Model.loraParameters': () => [],
    'Model.setLoraParameters': () => [{}],
    'Model.setLoraEnabled': () => [true],
    'Model.denseWeight': () => ['model.layers.0.self_attn.q_proj.weight', 'float32'],
    'Model.weightNames': () => [],
    'Model.info': () => [],
    'Model.generator': () => [Int32Array.from([1, 2]), { temperature: 0.5, topP: 0.9, topK: 4, seed: 1, lora: true }],
    'Model.accumulateGradients': () => [batch([1, 2, 3]), { dropoutSeed: 1, checkpoint: false }],
    'Model.applyOptimizer': () => [{ learningRate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 }],
    'Model.clearGradients': () => [],
    'Model.optimizerState': () => [],
    'Model.setOptimizerState': () => [{}, 0],
    'Model.batchGenerator': () => [[Int32Array.from([1, 2]), Int32Array.from([3])], { temperature: 0.5, topP: 0.9, topK: 4, seed: 1, lora: true }],
    'Generator.next': () => [],
    'Generator.step': () => [Int32Array.from([])],
    'Generator.logits': () => [],
    'Tensor.shape': () => [],
    'Tensor.dtype': () => [],
    'Tensor.nbytes': () => [],
    'Tensor.disposed': () => [],
  };
}

/** Methods the sweep leaves to the disposal test: they would take the shared fixtures away. */
const disposers = new Set(['Model.dispose', 'Generator.dispose', 'Tensor.dispose']);

interface EntryPoint {
  name: string;
  /** Calls it with `self` as `this` (ignored for plain functions). */
  call(self: unknown, args: unknown[]): unknown;
  /** The live object its methods run on. */
  self(): unknown;
}

function prototypeEntries(className: string, proto: object, self: () => unknown): EntryPoint[] {
  const out: EntryPoint[] = [];
  for (const key of Object.getOwnPropertyNames(proto)) {
    if (key === 'constructor') continue;
    const desc = Object.getOwnPropertyDescriptor(proto, key)!;
    const fn = (desc.get ?? desc.value) as unknown;
    if (typeof fn !== 'function') continue;
    out.push({ name: `${className}.${key}`, call: (s, args) => Reflect.apply(fn as Fn, s, args), self });
  }
  return out;
}

/** Every exported function, class and method, found at run time. */
function entryPoints(): EntryPoint[] {
  const out: EntryPoint[] = [];
  for (const [name, value] of Object.entries(exportsRecord)) {
    if (typeof value !== 'function') continue;
    if (/^[A-Z]/.test(name)) {
      // A class: constructing it by hand, or calling it, must fail cleanly.
      out.push({ name: `new ${name}`, call: (_s, args) => Reflect.construct(value as Fn, args), self: () => undefined });
      out.push({ name: `${name}()`, call: (_s, args) => Reflect.apply(value as Fn, undefined, args), self: () => undefined });
      continue;
    }
    out.push({ name, call: (_s, args) => Reflect.apply(value as Fn, exportsRecord, args), self: () => undefined });
  }
  out.push(...prototypeEntries('Model', Object.getPrototypeOf(f.model) as object, () => f.model));
  out.push(...prototypeEntries('Tensor', Object.getPrototypeOf(f.t22) as object, () => f.t22));
  out.push(...prototypeEntries('Generator', Object.getPrototypeOf(f.generator) as object, () => f.generator));
  return out;
}

/** One argument list per bad value at each position of the valid call (and one past it), and per option key. */
function mutations(valid: unknown[]): unknown[][] {
  const out: unknown[][] = [[]];
  for (let i = 0; i <= valid.length; i++) {
    for (const bad of badValues()) {
      const args = [...valid];
      args[i] = bad;
      out.push(args);
    }
    const arg = valid[i];
    // Options and records: each key set to each bad value, and each key removed.
    if (arg !== null && typeof arg === 'object' && !Array.isArray(arg) && !ArrayBuffer.isView(arg) && Object.getPrototypeOf(arg) === Object.prototype) {
      for (const key of Object.keys(arg)) {
        const { [key]: _removed, ...without } = arg as Record<string, unknown>;
        out.push(valid.map((v, j) => (j === i ? without : v)));
        for (const bad of badValues()) out.push(valid.map((v, j) => (j === i ? { ...(arg as object), [key]: bad } : v)));
      }
    }
  }
  return out;
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlxq-bad-args-'));
  // Mutated paths (a string in place of another argument) are relative: they land here.
  process.chdir(dir);
  const t22 = await addon.fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
  const file = join(dir, 'in.safetensors');
  await addon.saveSafetensors(file, { a: t22 });
  const w = await addon.randomNormal([inter, hidden], 'float32', 3);
  // Shaped as up_proj's weight, so setQuantizedWeight's valid call fits the model.
  const quantized = (await addon.quantize(w, 64, 4)) as [NativeTensor, NativeTensor, NativeTensor];
  const model = await tinyModel();
  const disposed = await addon.fromBytes(new Float32Array(1), [1], 'float32');
  disposed.dispose();
  f = {
    model,
    generator: await model.generator(Int32Array.from([1, 2]), { temperature: 0 }),
    t22,
    w,
    quantized,
    x: await addon.randomNormal([2, hidden], 'float32', 5),
    norm: await addon.randomNormal([hidden], 'float32', 6),
    disposed,
    file,
    dir,
    memoryLimit: (await addon.memory()).limit,
  };
});

afterAll(async () => {
  process.chdir(originalCwd);
  if (f) {
    await addon.setMemoryLimit(f.memoryLimit);
    rmSync(f.dir, { recursive: true, force: true });
  }
});

describe('native entry points with bad arguments', () => {
  it('finds the exports and methods to sweep at run time', () => {
    const names = entryPoints().map((e) => e.name);
    for (const expected of ['fromBytes', 'createModel', 'new Tensor', 'new Model', 'Model.denseWeight', 'Model.generator', 'Tensor.shape', 'Generator.next']) {
      expect(names).toContain(expected);
    }
    expect(names.length).toBeGreaterThanOrEqual(45);
  });

  it('every entry point, with every argument wrong in turn, throws or rejects with an Error or succeeds', async () => {
    const valid = validCalls();
    const tally: Record<Outcome, number> = { returned: 0, threw: 0, resolved: 0, rejected: 0 };
    const swept: string[] = [];
    for (const entry of entryPoints()) {
      if (disposers.has(entry.name)) continue;
      const known = valid[entry.name];
      const argLists = known ? mutations(known()) : [[], ...badValues().map((b) => [b, b, b, b, b, b, b])];
      for (const args of argLists) {
        const label = `${entry.name}(${args.map(describeValue).join(', ')})`;
        tally[await outcomeOf(label, () => entry.call(entry.self(), args))]++;
      }
      // Methods on the wrong receiver: a plain object, undefined, another class's instance.
      if (entry.name.includes('.')) {
        for (const self of [{}, undefined, f.t22, f.model]) {
          if (self === entry.self()) continue;
          tally[await outcomeOf(`${entry.name} on ${describeValue(self)}`, () => entry.call(self, known ? known() : []))]++;
        }
      }
      swept.push(entry.name);
    }
    expect(swept.length).toBe(entryPoints().length - disposers.size);
    // Most bad calls are refused, and refused on the JS thread or by a rejected Promise.
    expect(tally.threw + tally.rejected).toBeGreaterThan(2000);
    // Still alive, and still right: the MLX thread works after all of it.
    const product = await addon.matmul(f.t22, f.t22);
    expect([...new Float32Array(await addon.toBytes(product))]).toEqual([7, 10, 15, 22]);
    // A fresh model: the sweep's valid optimizer steps may have moved the shared one's LoRA weights.
    const fresh = await tinyModel();
    const { loss, tokens } = await fresh.loss(batch([1, 2, 3]));
    expect(Number.isFinite(loss) && loss > 0).toBe(true);
    expect(tokens).toBe(3);
    fresh.dispose();
  }, 600_000);

  it('refuses the calls that used to end the process or run on silently', async () => {
    const m = f.model;
    // Optimizer settings that would turn every LoRA weight into NaN.
    expect(() => m.applyOptimizer({ learningRate: NaN })).toThrow(/learningRate must be a finite number/);
    expect(() => m.applyOptimizer({ learningRate: 1e-3, beta1: 1 })).toThrow(/beta1 must be in \[0, 1\)/);
    // A method or accessor on another class's object would run on the wrong C++ object.
    expect(() => Reflect.apply(Object.getPrototypeOf(m).info as Fn, f.t22, [])).toThrow(TypeError);
    const shapeGetter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(f.t22), 'shape')!.get!;
    expect(() => Reflect.apply(shapeGetter, m, [])).toThrow(/this must be a Tensor/);
    // C++ exceptions other than Napi::Error on the JS thread (an unknown dtype name).
    expect(() => m.denseWeight('model.norm.weight', 'fp16' as never)).toThrow(TypeError);
    expect(() => m.denseWeight('model.norm.weight', 'fp16' as never)).toThrow(/unknown dtype 'fp16'/);
    expect(() => addon.astype(f.t22, 'fp16' as never)).toThrow(/unknown dtype 'fp16'/);
    // A zero group size would divide by zero on the MLX thread.
    expect(() => m.setQuantizedWeight('model.layers.0.mlp.up_proj.weight', ...f.quantized, 4, 0)).toThrow(RangeError);
    // Token ids outside the vocabulary would be read out of bounds by MLX's gather.
    expect(() => m.logits({ shape: [1, 1], tokens: Int32Array.from([vocab]) })).toThrow(/outside the vocabulary \[0, 32\)/);
    expect(() => m.loss({ ...batch([1, 2]), targets: Int32Array.from([1, -5]) })).toThrow(/targets\[1\] is -5/);
    expect(() => m.generator(Int32Array.from([1e9]))).toThrow(RangeError);
    // Options of the wrong type are refused, not ignored.
    expect(() => m.generator(Int32Array.from([1]), { temperature: '0.7' as never })).toThrow(/options.temperature must be a number/);
    expect(() => m.lossAndGrads(batch([1, 2]), { dropoutSeed: '1' as never })).toThrow(/dropoutSeed must be a number/);
    expect(() => addon.randomNormal([2], 'float32', 1, 'zero' as never)).toThrow(/'loc' must be a number/);
    // Shapes whose element count overflows, and arrays bigger than the machine: MLX's CPU
    // allocator returns a null buffer for them instead of failing.
    expect(() => addon.randomNormal([2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1], 'float32', 1)).toThrow(/more than 2\^53 elements/);
    await expect(addon.randomNormal([1 << 20, 1 << 20], 'float32', 1)).rejects.toThrow(/more than this machine's memory/);
    const column = await addon.randomNormal([1 << 20, 1], 'float32', 1);
    const row = await addon.randomNormal([1, 1 << 20], 'float32', 1);
    await expect(addon.matmul(column, row)).rejects.toThrow(/more than this machine's memory/);
    expect(() => addon.createModel(config as never, build as never, { ...lora, rank: 2 ** 31 - 1 } as never)).toThrow(/LoRA matrix/);
    expect(() => addon.createModel({ ...config, vocabSize: 2 ** 31 - 1 } as never, build as never, lora as never)).toThrow(RangeError);
    if ((await addon.device()).type === 'cpu') {
      const long = 1 << 17;
      await expect(m.logits({ shape: [1, long], tokens: new Int32Array(long) })).rejects.toThrow(/attention scores/);
    }
    // Disposed tensors and foreign objects.
    expect(() => addon.add(f.disposed, f.t22)).toThrow(/disposed Tensor/);
    expect(() => addon.toBytes(f.model as never)).toThrow(/must be a Tensor/);
    column.dispose();
    row.dispose();
  });

  it('disposing twice, and using what was disposed, fails cleanly', async () => {
    const model = await tinyModel();
    const generator = await model.generator(Int32Array.from([1]), { temperature: 0 });
    const tensor = await addon.fromBytes(new Float32Array(2), [2], 'float32');
    for (const [name, target] of [['Generator', generator], ['Model', model], ['Tensor', tensor]] as const) {
      const proto = Object.getPrototypeOf(target) as Record<string, unknown>;
      for (const args of [[], ...badValues().map((b) => [b])]) {
        await outcomeOf(`${name}.dispose(${args.map(describeValue).join(', ')})`, () => (proto.dispose as Fn).apply(target, args));
      }
    }
    expect(tensor.disposed).toBe(true);
    expect(() => model.logits(batch([1, 2]))).toThrow(/disposed/);
    expect(() => generator.next()).toThrow(/disposed/);
    expect(() => addon.toBytes(tensor)).toThrow(/disposed Tensor/);
    for (const key of Object.getOwnPropertyNames(Object.getPrototypeOf(model))) {
      const fn = (Object.getPrototypeOf(model) as Record<string, unknown>)[key];
      if (key === 'constructor' || typeof fn !== 'function') continue;
      await outcomeOf(`disposed Model.${key}`, () => (fn as Fn).call(model));
    }
  });
});
