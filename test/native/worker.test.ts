import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';

const addonPath = require.resolve('../../build/Release/mlx_qlora.node');

/** Starts `body` (CommonJS, with the addon as `m`) in a worker. */
function startWorker(body: string): Worker {
  return new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    const m = require(${JSON.stringify(addonPath)});
    ${body}
    `,
    { eval: true },
  );
}

/** Runs `body` in a worker; resolves with the first message it posts. */
function inWorker<T>(body: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const w = startWorker(body);
    w.once('message', resolve);
    w.once('error', reject);
  });
}

/** Resolves when the worker's thread has ended. */
function exited(w: Worker): Promise<number> {
  return new Promise((resolve) => w.once('exit', resolve));
}

// Seeded random weights for the one-layer tiny decoder both runs below build (plain JavaScript, spliced in).
const setTinyWeights = `async (m, model, hidden, inter, vocab) => {
  const shapes = {
    'model.embed_tokens.weight': [vocab, hidden], 'model.norm.weight': [hidden],
    'model.layers.0.input_layernorm.weight': [hidden], 'model.layers.0.post_attention_layernorm.weight': [hidden],
    'model.layers.0.self_attn.q_proj.weight': [hidden, hidden], 'model.layers.0.self_attn.k_proj.weight': [16, hidden],
    'model.layers.0.self_attn.v_proj.weight': [16, hidden], 'model.layers.0.self_attn.o_proj.weight': [hidden, hidden],
    'model.layers.0.mlp.gate_proj.weight': [inter, hidden], 'model.layers.0.mlp.up_proj.weight': [inter, hidden],
    'model.layers.0.mlp.down_proj.weight': [hidden, inter],
  };
  let seed = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    const t = await m.randomNormal(shape, 'float32', ++seed, name.endsWith('norm.weight') ? 1 : 0, 0.3);
    await model.setWeight(name, t);
    t.dispose();
  }
  await model.finalize();
}`;

// Plain JavaScript, so the worker (eval'd CommonJS) and this test run the very same code: a tiny
// dense decoder from seeded random weights, its logits and three greedy tokens. It makes a Model
// and a Generator, the two classes whose constructors the addon keeps per environment.
const tinyModelRun = `async (m) => {
  const setTinyWeights = ${setTinyWeights};
  const hidden = 32, inter = 64, vocab = 16;
  const model = await m.createModel(
    { vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter, numLayers: 1, numHeads: 2, numKvHeads: 1,
      tieWordEmbeddings: true },
    { quantBits: 0, computeDtype: 'float32', kernel: 'dequantize-matmul' },
    { rank: 0 });
  await setTinyWeights(m, model, hidden, inter, vocab);
  const logits = await model.logits({ shape: [1, 3], tokens: Int32Array.from([1, 2, 3]) });
  const values = [...new Float32Array(await m.toBytes(logits))];
  logits.dispose();
  const gen = await model.generator(Int32Array.from([1, 2, 3]), { temperature: 0 });
  const tokens = [await gen.next(), await gen.next(), await gen.next()];
  gen.dispose();
  model.dispose();
  return { values, tokens };
}`;

interface TinyRun {
  values: number[];
  tokens: number[];
}

// Training-shaped work (value_and_grad through the tiny decoder with LoRA on q/v, plus matmuls),
// plain JavaScript for the same reason as above. Batches vary by round, so interleaved jobs from
// two environments would show up as wrong numbers if they shared transform state unsafely.
const tinyTrainRun = `async (m, rounds) => {
  const setTinyWeights = ${setTinyWeights};
  const hidden = 32, inter = 64, vocab = 16;
  const model = await m.createModel(
    { vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter, numLayers: 1, numHeads: 2, numKvHeads: 1,
      tieWordEmbeddings: true },
    { quantBits: 0, quantGroupSize: 64, computeDtype: 'float32', kernel: 'dequantize-matmul' },
    { rank: 4, scale: 2, dropout: 0, targets: ['q_proj', 'v_proj'], numLayers: 1, seed: 3, dtype: 'float32' });
  await setTinyWeights(m, model, hidden, inter, vocab);
  const w = await m.randomNormal([64, 64], 'float32', 99, 0, 0.1);
  const out = [];
  // Several jobs in flight at once, so the queue really holds both environments' work.
  const round = async (r) => {
    const tokens = Int32Array.from({ length: 8 }, (_, i) => (i * 3 + r) % vocab);
    const targets = Int32Array.from({ length: 8 }, (_, i) => (i * 5 + r + 1) % vocab);
    const [step, prod] = await Promise.all([
      model.lossAndGrads({ shape: [2, 4], tokens, targets, mask: new Float32Array(8).fill(1) }),
      m.matmul(w, w),
    ]);
    const grads = [];
    for (const name of Object.keys(step.grads).sort()) {
      grads.push(...new Float32Array(await m.toBytes(step.grads[name])));
      step.grads[name].dispose();
    }
    const p = new Float32Array(await m.toBytes(prod));
    prod.dispose();
    return { loss: step.loss, tokens: step.tokens, grads, prod: [p[0], p[63], p[4095]] };
  };
  for (let r = 0; r < rounds; r += 4) out.push(...(await Promise.all([0, 1, 2, 3].map((k) => round(r + k)))));
  w.dispose();
  model.dispose();
  return out;
}`;

interface TrainRound {
  loss: number;
  tokens: number;
  grads: number[];
  prod: number[];
}

/** A worker queueing `count` 256×256 matmuls, its first result posted once the rest are queued. */
const busyWorker = (count: number) => `
  (async () => {
    const a = await m.randomNormal([256, 256], 'float32', 1, 0, 1);
    const jobs = Array.from({ length: ${count} }, () => m.matmul(a, a));
    await jobs[0];
    parentPort.postMessage('busy');
    await Promise.all(jobs);
  })();
`;

// One MLX thread serves every Node environment; a worker that loads the addon, computes and exits
// must not take the process down, leak anything, or stop the thread the main thread still uses.
describe('worker threads', () => {
  it('computes in a worker and exits cleanly, twice', async () => {
    for (let round = 0; round < 2; round++) {
      const result = await inWorker<number[]>(`
        (async () => {
          const a = await m.fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
          const c = await m.matmul(a, a);
          parentPort.postMessage([...new Float32Array(await m.toBytes(c))]);
          // Left undisposed on purpose: teardown must free them.
        })();
      `);
      expect(result).toEqual([7, 10, 15, 22]);
    }
  });

  it('a model made in a worker leaves the main thread able to make and use models after it exits', async () => {
    const run = (0, eval)(tinyModelRun) as (m: unknown) => Promise<TinyRun>;
    // Loaded here first, so a worker's Init that overwrote shared constructors would leave this
    // environment holding the dead worker's.
    const before = await run(native());
    const inside = await inWorker<TinyRun>(`(${tinyModelRun})(m).then((r) => parentPort.postMessage(r));`);
    const after = await run(native());
    expect(inside.values).toHaveLength(3 * 16);
    // Same seeds, same code: the worker and the main thread agree to the bit, before and after.
    expect(inside).toEqual(before);
    expect(after).toEqual(before);
    expect(new Set(before.values).size).toBeGreaterThan(40);
    expect(before.tokens.every((t) => t >= 0 && t < 16)).toBe(true);
  });

  it('main thread and worker share one MLX thread, which outlives the worker', async () => {
    const main = native().mlxThreadId();
    expect(main).not.toBe('0');
    const inside = await inWorker<string>(`parentPort.postMessage(m.mlxThreadId());`);
    expect(inside).toBe(main);
    // The worker has left; the thread it shared keeps serving this environment.
    const a = await native().fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
    const c = await native().matmul(a, a);
    expect([...new Float32Array(await native().toBytes(c))]).toEqual([7, 10, 15, 22]);
    expect(native().mlxThreadId()).toBe(main);
    a.dispose();
    c.dispose();
  });

  it('training jobs from a worker and the main thread at once give the results each gets alone', async () => {
    const run = (0, eval)(tinyTrainRun) as (m: unknown, rounds: number) => Promise<TrainRound[]>;
    const rounds = 24;
    const alone = await run(native(), rounds);
    const w = startWorker(`
      const run = ${tinyTrainRun};
      parentPort.once('message', () => run(m, ${rounds}).then((r) => parentPort.postMessage(r)));
      parentPort.postMessage('ready');
    `);
    const failed = new Promise<never>((_, reject) => w.once('error', reject));
    await Promise.race([new Promise((resolve) => w.once('message', resolve)), failed]);
    const fromWorker = new Promise<TrainRound[]>((resolve) => w.once('message', resolve));
    // Start both together: the worker begins on 'go', this environment right away.
    w.postMessage('go');
    const gone = exited(w);
    const [inMain, inWorkerResult] = await Promise.race([Promise.all([run(native(), rounds), fromWorker]), failed]);
    await gone;
    expect(alone).toHaveLength(rounds);
    expect(alone[0]!.grads.some((g) => g !== 0)).toBe(true);
    expect(inMain).toEqual(alone);
    expect(inWorkerResult).toEqual(alone);
  }, 60_000);

  it('a worker that exits or is terminated with jobs queued leaves the main thread working', async () => {
    const a = await native().fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
    for (const how of ['exit', 'terminate'] as const) {
      const w = startWorker(busyWorker(200) + (how === 'exit' ? `parentPort.once('message', () => process.exit(0));` : ''));
      const gone = exited(w);
      await new Promise((resolve) => w.once('message', resolve));
      // Main-thread jobs queued behind the worker's, while it goes away.
      const pending = Array.from({ length: 20 }, () => native().matmul(a, a));
      if (how === 'exit') w.postMessage('exit');
      else void w.terminate();
      await gone;
      const results = await Promise.all(pending);
      for (const c of results) {
        expect([...new Float32Array(await native().toBytes(c))]).toEqual([7, 10, 15, 22]);
        c.dispose();
      }
    }
    const c = await native().matmul(a, a);
    expect([...new Float32Array(await native().toBytes(c))]).toEqual([7, 10, 15, 22]);
    disposeBoth(a, c);
  }, 60_000);

  it('the process exits promptly and cleanly while the MLX thread is busy', () => {
    const scripts = {
      // process.exit() runs no cleanup hooks: the thread is mid-job when exit() starts.
      mainExits: `
        const m = require(${JSON.stringify(addonPath)});
        const { Worker } = require('node:worker_threads');
        new Worker(${JSON.stringify(`const m = require(${JSON.stringify(addonPath)});` + busyWorker(100).replace(/parentPort.postMessage\('busy'\);/, ''))}, { eval: true });
        (async () => {
          const a = await m.randomNormal([512, 512], 'float32', 1, 0, 1);
          const jobs = Array.from({ length: 100 }, () => m.matmul(a, a));
          await jobs[0];
          process.exit(0);
        })();
      `,
      // Only a worker loads the addon; it is terminated mid-job, so the last environment leaves
      // with a job running, and then the main thread ends naturally.
      onlyWorker: `
        const { Worker } = require('node:worker_threads');
        const w = new Worker(${JSON.stringify(`const { parentPort } = require('node:worker_threads'); const m = require(${JSON.stringify(addonPath)});` + busyWorker(100))}, { eval: true });
        w.once('message', () => w.terminate());
      `,
    };
    for (const [name, script] of Object.entries(scripts)) {
      for (let i = 0; i < 3; i++) {
        const child = spawnSync(process.execPath, ['-e', script], { timeout: 30_000, encoding: 'utf8' });
        expect({ name, status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({
          name,
          status: 0,
          signal: null,
          stderr: '',
        });
      }
    }
  }, 120_000);
});

function disposeBoth(...ts: { dispose(): void }[]): void {
  for (const t of ts) t.dispose();
}
