import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EvalReport } from '../../lib/eval/evaluate.js';
import { writeGgufModel } from '../../lib/export/gguf-model.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { generate } from '../../lib/model/generate.js';
import { ConversationEncoder } from '../../lib/tokenizer/conversation-encoder.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import type { RunEvent } from '../../lib/train/run-events.js';
import { toTypedArray } from '../../lib/tensor.js';
import { CHROMIUM, openInChromium } from '../fixtures/chromium.js';
import { BAD_LINES, makeEvalFixture, QA, type EvalFixture } from '../fixtures/eval-fixture.js';
import { FakeOllama, type FakeChatRequest } from '../fixtures/fake-ollama.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { tempDir } from '../helpers/temp-dir.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
const ALL = '(all)';

// Independent of lib/eval/metrics.ts: written from the definitions, not from that code.
const squish = (s: string) => s.trim().split(/\s+/).filter((t) => t !== '').join(' ').toLowerCase();
const PUNCT = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
function squadWords(s: string): string[] {
  const kept = [...s.toLowerCase()].filter((c) => !PUNCT.has(c)).join('');
  return kept.split(/\s+/).filter((w) => w !== '' && w !== 'a' && w !== 'an' && w !== 'the');
}
function f1(answer: string, reference: string): number {
  const a = squadWords(answer);
  const r = squadWords(reference);
  if (a.length === 0 || r.length === 0) return a.length === r.length ? 1 : 0;
  const pool = [...r];
  let same = 0;
  for (const w of a) {
    const k = pool.indexOf(w);
    if (k >= 0) {
      same++;
      pool.splice(k, 1);
    }
  }
  return same === 0 ? 0 : (2 * same) / (a.length + r.length);
}
const meanOf = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
const close = (got: number | null, want: number, rel = 1e-5) => {
  expect(got).not.toBeNull();
  expect(Math.abs(got! - want)).toBeLessThanOrEqual(rel * Math.max(1, Math.abs(want)));
};

/** Judge: the answer that equals the reference wins; both or neither is a tie. */
function referenceJudge(request: FakeChatRequest): string {
  const user = request.messages.at(-1)!.content;
  const part = (name: string) => new RegExp(`${name}:\\n([\\s\\S]*?)(?:\\n\\n(?:Answer|Which)|$)`).exec(user)![1]!;
  const ref = part('Reference answer');
  const a = part('Answer A') === ref;
  const b = part('Answer B') === ref;
  return a === b ? 'TIE' : a ? 'A' : 'B';
}

describe('mlx-qlora eval: a tiny model trained on a fixed set of answers', () => {
  let e: EvalFixture;
  let out: string;
  let report: EvalReport;
  let ggufF32: string;
  let ggufQ4: string;
  let fake: FakeOllama;

  beforeAll(async () => {
    e = await makeEvalFixture(48);
    const dir = tempDir('eval-');
    out = join(dir, 'report');
    ggufF32 = join(dir, 'tuned-f32.gguf');
    ggufQ4 = join(dir, 'tuned-q4_0.gguf');
    await writeGgufModel({ source: e.fx.modelDir, adapter: join(e.run, 'adapter') }, ggufF32, { type: 'f32' });
    await writeGgufModel({ source: e.fx.modelDir, adapter: join(e.run, 'adapter') }, ggufQ4, { type: 'q4_0' });
    fake = await FakeOllama.start({ models: ['judge'], chat: referenceJudge });
    const args = ['--import', 'tsx', cli, 'eval', '--model', e.fx.modelDir, '--adapter', `tuned=${e.run}`, '--data', e.evalJsonl, '--out', out];
    args.push('--max-tokens', '8', '--seed', '3', '--judge', 'judge', '--gguf', ggufF32, '--gguf', ggufQ4);
    // Asynchronous: the fake Ollama server answers from this process's event loop.
    const r = await new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, args, { encoding: 'utf8', env: { ...process.env, OLLAMA_HOST: fake.host } }, (error, stdout, stderr) =>
        done({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${e.evalJsonl}:${QA.length + 1}: broken-json`);
    expect(r.stdout).toMatch(/^base: exact match 0\.0%/m);
    report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as EvalReport;
  }, 600_000);
  afterAll(async () => {
    await fake?.close();
    await e?.cleanup();
  });

  it('reports bad lines as prepare does and evaluates the rest', () => {
    expect(report.data.items).toBe(QA.length);
    expect(report.data.rejected.map((r) => [r.line, r.reason])).toEqual([
      [QA.length + 1, 'broken-json'],
      [QA.length + 2, 'schema'],
    ]);
    expect(BAD_LINES).toHaveLength(2);
    expect(report.items.map((i) => [i.category, i.reference])).toEqual(QA.map((x) => [x.category, x.a]));
  });

  it('shows the tuned arm ahead on exact match, and its answers are what each model generates alone', async () => {
    const em = (arm: string) => report.generation.find((g) => g.arm === arm && g.category === ALL)!.exact_match!;
    expect(em('tuned')).toBeGreaterThanOrEqual(0.75);
    expect(em('tuned')).toBeGreaterThan(em('base'));
    // Each arm loaded on its own (the adapter through the ordinary loader, not switched in): same greedy tokens.
    const { tokenizer, template } = await loadModelTokenizer(e.fx.modelDir);
    const encoder = new ConversationEncoder(tokenizer, template);
    const stops = [tokenizer.eosId!, tokenizer.tokenId('<|im_end|>')!];
    for (const [arm, adapter] of [['base', undefined], ['tuned', join(e.run, 'adapter')]] as const) {
      const model = await loadModel(e.fx.modelDir, adapter ? { adapter } : {});
      try {
        for (const [k, x] of QA.entries()) {
          const { ids, mask } = encoder.encode({ kind: 'chat', messages: [{ role: 'user', content: x.q }, { role: 'assistant', content: x.a }] }, 'last-assistant');
          const prompt = Array.from(ids.subarray(0, mask.indexOf(1)));
          const g = await generate(model.native, prompt, { maxTokens: 8, seed: 3, stopTokens: stops });
          expect(report.items[k]!.outputs[arm]!.tokens, `${arm} ${x.q}`).toEqual(g.tokens);
          expect(report.items[k]!.outputs[arm]!.text).toBe(tokenizer.decode(g.tokens));
        }
      } finally {
        model.dispose();
      }
    }
  }, 120_000);

  it('every generation number in report.json equals the one recomputed here from the answers', () => {
    for (const row of report.generation) {
      const items = report.items.filter((i) => row.category === ALL || i.category === row.category);
      const outs = items.map((i) => i.outputs[row.arm]!);
      expect(row.items).toBe(items.length);
      close(row.exact_match, meanOf(items.map((i) => (squish(i.outputs[row.arm]!.text) === squish(i.reference!) ? 1 : 0))), 1e-12);
      close(row.token_f1, meanOf(items.map((i) => f1(i.outputs[row.arm]!.text, i.reference!))), 1e-12);
      close(row.mean_answer_tokens, meanOf(outs.map((o) => o.tokens.length)), 1e-12);
      close(row.refusal_rate, meanOf(outs.map((o) => (/\b(sorry|cannot|can't|unable|as an ai)\b/i.test(o.text) ? 1 : 0))), 1e-12);
      expect(row.generated_tokens).toBe(outs.reduce((a, o) => a + o.tokens.length, 0));
      close(row.seconds, outs.reduce((a, o) => a + o.seconds, 0), 1e-12);
      close(row.tokens_per_sec, row.generated_tokens / row.seconds, 1e-12);
    }
    expect(report.generation.map((g) => `${g.arm}/${g.category}`)).toEqual(['base/geo', 'base/math', `base/${ALL}`, 'tuned/geo', 'tuned/math', `tuned/${ALL}`]);
  });

  it('every likelihood number equals the one recomputed here from each model’s own logits', async () => {
    const { tokenizer, template } = await loadModelTokenizer(e.fx.modelDir);
    const encoder = new ConversationEncoder(tokenizer, template);
    for (const [arm, adapter] of [['base', undefined], ['tuned', join(e.run, 'adapter')]] as const) {
      const model: LoadedModel = await loadModel(e.fx.modelDir, adapter ? { adapter } : {});
      const perItem: { category: string; nll: number; n: number; right: number }[] = [];
      try {
        for (const x of QA) {
          const { ids, mask } = encoder.encode({ kind: 'chat', messages: [{ role: 'user', content: x.q }, { role: 'assistant', content: x.a }] }, 'last-assistant');
          const t = await model.native.logits({ shape: [1, ids.length], tokens: ids });
          const logits = (await toTypedArray(t)) as Float32Array;
          const V = t.shape[2]!;
          t.dispose();
          let nll = 0, n = 0, right = 0;
          for (let i = 1; i < ids.length; i++) {
            if (!mask[i]) continue;
            const row = Array.from(logits.subarray((i - 1) * V, i * V));
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0));
            nll += lse - row[ids[i]!]!;
            right += row.indexOf(max) === ids[i] ? 1 : 0;
            n++;
          }
          perItem.push({ category: x.category, nll, n, right });
        }
      } finally {
        model.dispose();
      }
      for (const category of ['geo', 'math', ALL]) {
        const rows = perItem.filter((p) => category === ALL || p.category === category);
        const n = rows.reduce((a, p) => a + p.n, 0);
        const loss = rows.reduce((a, p) => a + p.nll, 0) / n;
        const got = report.likelihood.find((l) => l.arm === arm && l.category === category)!;
        expect(got.tokens).toBe(n);
        close(got.loss, loss);
        close(Math.log(got.perplexity!), loss);
        close(got.token_accuracy, rows.reduce((a, p) => a + p.right, 0) / n, 1e-12);
      }
    }
    const loss = (arm: string) => report.likelihood.find((l) => l.arm === arm && l.category === ALL)!.loss!;
    expect(loss('tuned')).toBeLessThan(loss('base') / 10);
  }, 120_000);

  it('training and validation loss come from the run’s metrics.jsonl', async () => {
    const events = (await readFile(join(e.run, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as RunEvent);
    const t = report.training[0]!;
    expect(t.arm).toBe('tuned');
    expect(t.steps).toEqual(events.flatMap((x) => (x.type === 'step' ? [{ step: x.step, loss: x.loss }] : [])));
    expect(t.evals).toEqual(events.flatMap((x) => (x.type === 'eval' ? [{ step: x.step, val_loss: x.val_loss }] : [])));
    expect(t.evals.length).toBe(4);
  });

  it('judge: the reference-matching answer wins whichever side it is shown on; ties when both or neither match', () => {
    const j = report.judge!;
    let wins = 0, losses = 0, ties = 0;
    for (const i of report.items) {
      const tuned = i.outputs.tuned!.text === i.reference;
      const base = i.outputs.base!.text === i.reference;
      if (tuned === base) ties++;
      else if (tuned) wins++;
      else losses++;
    }
    const w = j.win_rates[0]!;
    expect([w.wins, w.losses, w.ties, w.invalid]).toEqual([wins, losses, ties, 0]);
    expect(wins).toBeGreaterThanOrEqual(6);
    // Wilson 95% from the textbook formula, z = 1.959964.
    const n = wins + losses, p = wins / n, z = 1.959964;
    const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
    const half = ((z / (1 + (z * z) / n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n)));
    close(w.low, centre - half, 1e-6);
    close(w.high, Math.min(1, centre + half), 1e-6);
    const orders = j.decisions.map((d) => d.order[0]);
    expect(new Set(orders).size).toBe(2);
  });

  it('export check: the F32 export matches our model (KL < 1e-4, top-1 ≥ 99.9%); Q4_0 has a larger KL, recomputed here', async () => {
    const [f32, q4] = report.export_checks;
    expect(f32!.gguf).toBe(ggufF32);
    expect(f32!.against).toBe('tuned');
    expect(f32!.mean_kl).toBeLessThan(1e-4);
    expect(f32!.top1_agreement).toBeGreaterThanOrEqual(0.999);
    close(f32!.perplexity_llama_cpp, f32!.perplexity_ours!, 1e-3);
    expect(q4!.mean_kl).toBeGreaterThan(10 * f32!.mean_kl);
    expect(q4!.mean_kl).toBeGreaterThan(1e-4);
    // Q4_0's mean KL recomputed from llama.cpp's probabilities (the test helper) and our logits.
    const { tokenizer, template } = await loadModelTokenizer(e.fx.modelDir);
    const encoder = new ConversationEncoder(tokenizer, template);
    const model = await loadModel(e.fx.modelDir, { adapter: join(e.run, 'adapter') });
    const oracle = await openLlamaCppOracle(ggufQ4, { contextSize: 128 });
    let kl = 0, count = 0;
    try {
      for (const x of QA) {
        const { ids } = encoder.encode({ kind: 'chat', messages: [{ role: 'user', content: x.q }, { role: 'assistant', content: x.a }] }, 'last-assistant');
        const theirs = await oracle.logits(Array.from(ids));
        const t = await model.native.logits({ shape: [1, ids.length], tokens: ids });
        const ours = (await toTypedArray(t)) as Float32Array;
        const V = t.shape[2]!;
        t.dispose();
        theirs.forEach((q, i) => {
          const p = Array.from(ours.subarray(i * V, (i + 1) * V));
          const lp = Math.log(p.reduce((s, z) => s + Math.exp(z), 0));
          const lq = Math.log(Array.from(q).reduce((s, z) => s + Math.exp(z), 0));
          kl += p.reduce((s, z, v) => s + Math.exp(z - lp) * (z - lp - (q[v]! - lq)), 0);
          count++;
        });
      }
    } finally {
      model.dispose();
      await oracle.dispose();
    }
    expect(q4!.positions).toBe(count);
    close(q4!.mean_kl, kl / count, 1e-3);
  }, 300_000);

  it.skipIf(!existsSync(CHROMIUM))('report.html opens in chromium with no console errors and every chart mark present', async () => {
    const screenshot = join(import.meta.dirname, '..', '..', 'test-output', 'eval-report.png');
    const page = await openInChromium(join(out, 'report.html'), screenshot);
    try {
      expect(page.errors).toEqual([]);
      // A metric that is 0 everywhere (here refusals, unless an answer happens to refuse) is a sentence, not a chart.
      const refusals = report.generation.some((g) => g.refusal_rate > 0);
      expect(page.svgCount).toBe(refusals ? 5 : 4);
      const t = report.training[0]!;
      expect(page.pointMarksPerSvg[0]).toBe(t.steps.length + t.evals.length);
      // Exact match, F1, token accuracy (and refusals): 2 arms × (geo, math, all).
      expect(page.barMarksPerSvg.slice(1)).toEqual(refusals ? [6, 6, 6, 6] : [6, 6, 6]);
    } finally {
      await page.close();
    }
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).not.toContain('<script');
    if (!report.generation.some((g) => g.refusal_rate > 0)) expect(html).toContain('Refusal rate: 0 for every arm and category.');
    const md = await readFile(join(out, 'report.md'), 'utf8');
    expect(md).toContain('| tuned | (all) |');
  }, 120_000);
});
