import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArmSwitcher, readArmAdapters, sharedLoraSettings } from '../../lib/eval/adapter-arms.js';
import { architectureOfModel } from '../../lib/model/architecture-of.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { LoraSettings } from '../../lib/model/lora-options.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { saveAdapterFolder } from '../helpers/adapter-folder.js';
import { seededFloats } from '../helpers/reference.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

const TOKENS = Int32Array.from([1, 17, 42, 99, 5, 230, 64, 8, 150, 3]);

async function logitsOf(model: LoadedModel, lora = true): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, TOKENS.length], tokens: TOKENS }, { lora });
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

/** An adapter folder with seeded non-zero A and B (B too, so it changes the model). */
async function randomAdapter(tiny: TinyModel, dir: string, lora: LoraSettings, seed: number): Promise<void> {
  const model = await loadModel(tiny.hfDir, { quantization: 'none', lora });
  try {
    const params = await model.native.loraParameters();
    const updates: Record<string, Tensor> = {};
    for (const [name, p] of Object.entries(params)) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.3), p.shape);
    await model.native.setLoraParameters(updates);
    disposeAll(Object.values(updates), Object.values(params));
    await saveAdapterFolder(model, dir, lora);
  } finally {
    model.dispose();
  }
}

describe('adapters of different rank, scale and targets switched in one loaded base', () => {
  let tiny: TinyModel;
  let x: string;
  let y: string;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 9 });
    x = join(tiny.root, 'x');
    y = join(tiny.root, 'y');
    await randomAdapter(tiny, x, { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] }, 100);
    await randomAdapter(tiny, y, { rank: 8, alpha: 4, targets: ['k_proj', 'o_proj', 'down_proj'] }, 900);
  }, 120_000);
  afterAll(() => tiny?.cleanup());

  it('each arm gives the logits of that adapter loaded alone, and the base those of the bare model, in any switching order', async () => {
    const alone = async (adapter?: string) => {
      const m = await loadModel(tiny.hfDir, { quantization: 'none', ...(adapter ? { adapter } : {}) });
      try {
        return await logitsOf(m);
      } finally {
        m.dispose();
      }
    };
    const want = { base: await alone(), x: await alone(x), y: await alone(y) };
    // The adapters really differ from each other and from the base.
    expect(maxAbsDiff(want.x, want.base)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(want.y, want.base)).toBeGreaterThan(1e-2);

    const arch = await architectureOfModel(tiny.hfDir);
    const adapters = await readArmAdapters([{ name: 'x', path: x }, { name: 'y', path: y }], arch);
    const shared = sharedLoraSettings(adapters, arch.numLayers)!;
    expect([shared.rank, shared.targets]).toEqual([8, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj']]);
    const model = await loadModel(tiny.hfDir, { quantization: 'none', lora: shared });
    try {
      const switcher = await ArmSwitcher.open(model.native, adapters);
      for (const arm of ['y', 'x', 'base', 'y', 'base', 'x'] as const) {
        const adapter = adapters.find((a) => a.name === arm);
        await switcher.use(adapter);
        const got = await logitsOf(model, adapter !== undefined);
        expect(maxAbsDiff(got, want[arm]), arm).toBeLessThan(1e-5);
      }
    } finally {
      model.dispose();
    }
  }, 120_000);
});
