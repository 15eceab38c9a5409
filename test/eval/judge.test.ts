import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgeArms, type JudgeCase } from '../../lib/eval/judge.js';
import { wilsonInterval } from '../../lib/stats/wilson.js';
import { closedPort, FakeOllama, type FakeChatRequest } from '../fixtures/fake-ollama.js';

/**
 * 303 cases: the fake judge prefers "tuned" on cases 0–80, "base" on 81–262, calls 263–282 a tie
 * and answers nonsense on 283–302, whatever order it is shown them in.
 */
const N = 303;
const cases: JudgeCase[] = Array.from({ length: N }, (_, i) => ({ id: `case-${i}`, prompt: `question ${i}`, answers: { base: `base answer ${i}`, tuned: `tuned answer ${i}` } }));

function fakeJudge(request: FakeChatRequest): string {
  const user = request.messages.find((m) => m.role === 'user')!.content;
  const i = Number(/^Question:\nquestion (\d+)/.exec(user)![1]);
  const a = /Answer A:\n(\w+) answer/.exec(user)![1]!;
  if (i >= 283) return 'I would rather not say.';
  if (i >= 263) return 'TIE';
  const preferred = i < 81 ? 'tuned' : 'base';
  // Lower case and punctuation on purpose: the parser takes the first word.
  return i % 3 === 0 ? `${preferred === a ? 'a' : 'b'}.` : preferred === a ? 'A' : 'B — clearer';
}

describe('judge through Ollama (a fake server on 127.0.0.1)', () => {
  let fake: FakeOllama;
  beforeAll(async () => {
    fake = await FakeOllama.start({ models: ['judge'], chat: fakeJudge });
  });
  afterAll(() => fake?.close());

  it('counts wins, losses, ties and invalid replies whatever the order, with the textbook Wilson interval', async () => {
    const result = await judgeArms({ model: 'judge', host: fake.host, baseline: 'base', candidates: ['tuned'], cases, seed: 11 });
    const w = result.win_rates[0]!;
    expect([w.wins, w.losses, w.ties, w.invalid]).toEqual([81, 182, 20, 20]);
    // Newcombe (1998), Statistics in Medicine 17:857, table I example 81/263: Wilson 0.2553 to 0.3662.
    expect(w.win_rate).toBeCloseTo(81 / 263, 12);
    expect(w.low.toFixed(4)).toBe('0.2553');
    expect(w.high.toFixed(4)).toBe('0.3662');
    expect(result.decisions).toHaveLength(N);
    // Every request showed the answers in the order the decision records.
    const chats = fake.requestsTo('POST', '/api/chat');
    expect(chats).toHaveLength(N);
    chats.forEach((req, k) => {
      const d = result.decisions[k]!;
      const user = (req.json as { messages: { role: string; content: string }[] }).messages[1]!.content;
      expect(user).toContain(`Answer A:\n${d.order[0]} answer ${k}`);
      expect(user).toContain(`Answer B:\n${d.order[1]} answer ${k}`);
      expect((req.json as { options: { temperature: number } }).options.temperature).toBe(0);
    });
  });

  it('randomises the order from the seed: both orders occur, a seed repeats its orders, another seed changes them', async () => {
    const firstOf = async (seed: number) => (await judgeArms({ model: 'judge', host: fake.host, baseline: 'base', candidates: ['tuned'], cases: cases.slice(0, 100), seed })).decisions.map((d) => d.order[0]);
    const a = await firstOf(5);
    const tunedFirst = a.filter((x) => x === 'tuned').length;
    // Binomial(100, 1/2): 30..70 holds with probability 1 − 8e-5.
    expect(tunedFirst).toBeGreaterThan(30);
    expect(tunedFirst).toBeLessThan(70);
    expect(await firstOf(5)).toEqual(a);
    const b = await firstOf(6);
    expect(b).not.toEqual(a);
  });

  it('wilsonInterval: more textbook values (Newcombe 1998 table I)', () => {
    const r = (s: number, n: number) => [wilsonInterval(s, n).low.toFixed(4), wilsonInterval(s, n).high.toFixed(4)];
    expect(r(15, 148)).toEqual(['0.0624', '0.1605']);
    expect(r(0, 20)).toEqual(['0.0000', '0.1611']);
    expect(r(1, 29)).toEqual(['0.0061', '0.1718']);
  });

  it('fails before judging, naming the host, when nothing answers; naming the model when the server lacks it', async () => {
    const port = await closedPort();
    await expect(judgeArms({ model: 'judge', host: `127.0.0.1:${port}`, baseline: 'base', candidates: ['tuned'], cases, seed: 1 })).rejects.toThrow(`Ollama is not reachable at http://127.0.0.1:${port}`);
    const before = fake.requestsTo('POST', '/api/chat').length;
    await expect(judgeArms({ model: 'nope', host: fake.host, baseline: 'base', candidates: ['tuned'], cases, seed: 1 })).rejects.toThrow(/Ollama at http:\/\/127\.0\.0\.1:\d+: \/api\/show failed \(HTTP 404\): model 'nope' not found/);
    expect(fake.requestsTo('POST', '/api/chat').length).toBe(before);
  });
});

describe('mlx-qlora eval --judge', () => {
  it('stops before loading anything when Ollama does not answer, naming the host', async () => {
    const { spawnSync } = await import('node:child_process');
    const { join } = await import('node:path');
    const port = await closedPort();
    const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', '--model', '/nonexistent/model', '--adapter', '/nonexistent/adapter', '--data', '/nonexistent.jsonl', '--out', '/nonexistent/out', '--judge', 'judge'], {
      encoding: 'utf8',
      env: { ...process.env, OLLAMA_HOST: `127.0.0.1:${port}` },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`mlx-qlora: Ollama is not reachable at http://127.0.0.1:${port}`);
  }, 60_000);
});
