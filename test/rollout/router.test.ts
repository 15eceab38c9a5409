import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { wilsonInterval } from '../../lib/stats/wilson.js';
import { createRouter, keyPoint } from '../../lib/rollout/router.js';
import { readOutcomes } from '../../lib/rollout/outcome-log.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('wilsonInterval', () => {
  // Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (score interval, no continuity correction).
  it.each([
    [81, 263, 0.2553, 0.3662],
    [15, 148, 0.0624, 0.1605],
    [0, 20, 0.0, 0.1611],
    [1, 29, 0.0061, 0.1718],
  ])('%i/%i gives Newcombe’s [%f, %f]', (x, n, low, high) => {
    const p = wilsonInterval(x, n);
    expect(p.rate).toBeCloseTo(x / n, 12);
    expect(Math.abs(p.low - low)).toBeLessThan(5e-5);
    expect(Math.abs(p.high - high)).toBeLessThan(5e-5);
  });

  it('is [0, 1] with no trials and refuses impossible counts', () => {
    expect(wilsonInterval(0, 0)).toMatchObject({ low: 0, high: 1 });
    expect(() => wilsonInterval(3, 2)).toThrow(/successes ≤ trials/);
    expect(() => wilsonInterval(1.5, 2)).toThrow(RangeError);
  });
});

describe('createRouter', () => {
  const base = { control: 'iceburg-v1', candidate: 'iceburg-v2', salt: 'exp-2026-12' };

  it('sends the same key to the same arm every time', () => {
    const a = createRouter({ ...base, share: 0.5 });
    const b = createRouter({ ...base, share: 0.5 });
    for (let i = 0; i < 1000; i++) {
      const key = `session-${i}`;
      const first = a.route(key);
      expect(a.route(key)).toEqual(first);
      expect(b.route(key)).toEqual(first);
      expect(first.model).toBe(first.arm === 'candidate' ? 'iceburg-v2' : 'iceburg-v1');
    }
  });

  it('keeps the share within ±1% over 100k random keys, for each stage', () => {
    const keys = Array.from({ length: 100_000 }, () => randomBytes(12).toString('base64url'));
    for (const share of [0.1, 0.5, 0.9]) {
      const router = createRouter({ ...base, share });
      const candidates = keys.filter((k) => router.route(k).arm === 'candidate').length;
      expect(Math.abs(candidates / keys.length - share)).toBeLessThan(0.01);
    }
  });

  it('moves keys only from control to candidate when the share grows', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
    const at10 = createRouter({ ...base, share: 0.1 });
    const at50 = createRouter({ ...base, share: 0.5 });
    let moved = 0;
    for (const key of keys) {
      const before = at10.route(key).arm;
      const after = at50.route(key).arm;
      if (before === 'candidate') expect(after).toBe('candidate');
      if (before !== after) moved++;
    }
    expect(moved / keys.length).toBeGreaterThan(0.38);
    expect(moved / keys.length).toBeLessThan(0.42);
  });

  it('depends on the salt and spreads points evenly', () => {
    expect(keyPoint('a', 'k')).not.toBe(keyPoint('b', 'k'));
    const points = Array.from({ length: 10_000 }, (_, i) => keyPoint('s', String(i)));
    expect(Math.min(...points)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...points)).toBeLessThan(1);
    const deciles = new Array<number>(10).fill(0);
    for (const p of points) deciles[Math.floor(p * 10)]!++;
    for (const count of deciles) expect(Math.abs(count - 1000)).toBeLessThan(120);
  });

  it('appends outcomes with their arm to JSONL and summarizes them', async () => {
    const log = join(tempDir('router-'), 'outcomes.jsonl');
    const router = createRouter({ ...base, share: 0.5, log, rules: { min_samples: 2 } });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const key of keys) await router.record(key, { ok: true, latencyMs: 10, tokens: 5 });
    for (const key of keys) await router.record(key, { score: router.route(key).arm === 'candidate' ? 1 : 0.8 });
    const read = await readOutcomes(log);
    expect(read).toHaveLength(80);
    expect(read.map((r) => r.arm)).toEqual(router.recorded.map((r) => r.arm));
    const summary = await router.summarize();
    const candidates = keys.filter((k) => router.route(k).arm === 'candidate').length;
    expect(summary.arms.candidate.requests).toBe(candidates);
    expect(summary.arms.control.requests).toBe(40 - candidates);
    expect(summary.arms.candidate.feedback).toEqual(wilsonInterval(candidates, candidates));
    expect(summary.arms.control.meanTokens).toBe(5);
  });

  it('refuses a share outside [0, 1] and equal arms', () => {
    expect(() => createRouter({ ...base, share: 1.5 })).toThrow(/share/);
    expect(() => createRouter({ ...base, candidate: base.control, share: 0.1 })).toThrow(/same model/);
  });
});
