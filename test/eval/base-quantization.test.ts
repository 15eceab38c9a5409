import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEvalData } from '../../lib/eval/eval-data.js';
import { evaluate } from '../../lib/eval/evaluate.js';
import { generate } from '../../lib/model/generate.js';
import { loadModel } from '../../lib/model/load-model.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { disposeAll, tensor, type Tensor } from '../../lib/tensor.js';
import { saveAdapterFolder } from '../helpers/adapter-folder.js';
import { seededFloats } from '../helpers/reference.js';
import { tempDir } from '../helpers/temp-dir.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

describe('evaluate: the base is quantized as the adapters record', () => {
  let fx: TrainFixture;
  let dense: string;
  let fourBit: string;
  let data: string;
  beforeAll(async () => {
    fx = await makeTrainFixture(4);
    const dir = tempDir('eval-quant-');
    dense = join(dir, 'dense');
    fourBit = join(dir, 'four-bit');
    const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] as const };
    const model = await loadModel(fx.modelDir, { quantization: 'none', lora: { ...lora, targets: [...lora.targets] } });
    try {
      const params = await model.native.loraParameters();
      const updates: Record<string, Tensor> = {};
      let seed = 40;
      for (const [name, p] of Object.entries(params)) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.3), p.shape);
      await model.native.setLoraParameters(updates);
      disposeAll(Object.values(updates), Object.values(params));
      await saveAdapterFolder(model, dense, { ...lora, targets: [...lora.targets] });
    } finally {
      model.dispose();
    }
    // The same matrices, recorded as trained on a 4-bit base.
    await cp(dense, fourBit, { recursive: true });
    const configPath = join(fourBit, 'adapter_config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { base_model: { quantization: unknown } };
    expect(config.base_model.quantization).toBeNull();
    config.base_model.quantization = { bits: 4, group_size: 64 };
    await writeFile(configPath, JSON.stringify(config));
    data = join(dir, 'eval.jsonl');
    await writeFile(data, `${JSON.stringify({ prompt: 'Tell me about <i>sea ice</i> & "snow".', reference: 'It <b>melts</b>.' })}\n`);
  }, 120_000);
  afterAll(() => fx?.cleanup());

  it('an adapter recorded on a 4-bit base runs on a 4-bit base, as generate would load it', async () => {
    const { report, files } = await evaluate({ model: fx.modelDir, adapters: [{ name: 'q', path: fourBit }], data, out: join(tempDir('eval-quant-out-'), 'r'), maxTokens: 6 });
    expect(report.settings.base_quantization).toEqual({ bits: 4, groupSize: 64 });
    // Prompts and references are text in the HTML, never markup.
    const html = await readFile(files[2]!, 'utf8');
    expect(html).toContain('Tell me about &lt;i&gt;sea ice&lt;/i&gt; &amp; &quot;snow&quot;.');
    expect(html).toContain('It &lt;b&gt;melts&lt;/b&gt;.');
    expect(html).not.toContain('<i>sea ice');
    expect(html).not.toContain('<b>melts');
    const md = await readFile(files[1]!, 'utf8');
    expect(md).toContain('| Tell me about &lt;i&gt;sea ice&lt;/i&gt; &amp; &quot;snow&quot;. | It &lt;b&gt;melts&lt;/b&gt;. |');
    const alone = await loadModel(fx.modelDir, { adapter: fourBit });
    const denseAlone = await loadModel(fx.modelDir, { adapter: dense });
    try {
      expect(alone.build.quantBits).toBe(4);
      const { tokenizer, template } = await loadModelTokenizer(fx.modelDir);
      const item = (await loadEvalData(data, tokenizer, template)).items[0]!;
      const stopTokens = [tokenizer.eosId!, tokenizer.tokenId('<|im_end|>')!];
      const want = await generate(alone.native, item.promptTokens, { maxTokens: 6, stopTokens });
      const wantDense = await generate(denseAlone.native, item.promptTokens, { maxTokens: 6, stopTokens });
      expect(report.items[0]!.outputs.q!.tokens).toEqual(want.tokens);
      // The check can tell the bases apart on this model.
      expect(wantDense.tokens).not.toEqual(want.tokens);
    } finally {
      alone.dispose();
      denseAlone.dispose();
    }
  }, 120_000);

  it('adapters recorded on different bases are refused unless one quantization is given', async () => {
    const out = join(tempDir('eval-quant-out-'), 'r');
    const adapters = [{ name: 'd', path: dense }, { name: 'q', path: fourBit }];
    await expect(evaluate({ model: fx.modelDir, adapters, data, out, maxTokens: 2 })).rejects.toThrow(/the adapters were trained on differently quantized bases .*: give one quantization \(--bits\) for all/);
    const { report } = await evaluate({ model: fx.modelDir, adapters, data, out, maxTokens: 2, quantization: 'none' });
    expect(report.settings.base_quantization).toBe('none');
  }, 120_000);
});
