import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRolloutPlan } from '../../lib/rollout/plan.js';
import { startRolloutProxy, upstreamUrl, type RolloutProxy } from '../../lib/rollout/proxy.js';
import { readOutcomes } from '../../lib/rollout/outcome-log.js';
import { tempDir } from '../helpers/temp-dir.js';

interface Seen {
  path: string;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

/** Answers /api/chat as Ollama streams it: NDJSON chunks, the last with done and eval_count. */
function fakeOllama(seen: Seen[]): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
      seen.push({ path: req.url ?? '', body, headers: req.headers });
      if (req.url === '/api/tags') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ models: [{ name: 'iceburg-v1:latest' }] }));
        return;
      }
      if (body.model === 'broken') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: "model 'broken' not found" }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const words = ['Hel', 'lo', ' there'];
      let i = 0;
      const tick = () => {
        if (i < words.length) {
          res.write(`${JSON.stringify({ model: body.model, message: { role: 'assistant', content: words[i++] }, done: false })}\n`);
          setTimeout(tick, 5);
        } else {
          res.end(`${JSON.stringify({ model: body.model, done: true, done_reason: 'stop', eval_count: 7 })}\n`);
        }
      };
      tick();
    });
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('rollout proxy', () => {
  const seen: Seen[] = [];
  const upstream = fakeOllama(seen);
  let proxy: RolloutProxy;
  let log: string;

  beforeAll(async () => {
    const host = await listen(upstream);
    log = join(tempDir('proxy-'), 'outcomes.jsonl');
    const plan = parseRolloutPlan({ model: 'iceburg', control: 'iceburg-v1', candidate: 'iceburg-v2', salt: 'x', share: 0.5, log, key_header: 'x-session-id' });
    proxy = await startRolloutProxy({ plan, upstream: host });
  });
  afterAll(async () => {
    await proxy.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  async function chat(key: string | undefined, model = 'iceburg', viaUser = false): Promise<{ status: number; text: string; arm: string | null }> {
    const body = { model, messages: [{ role: 'user', content: 'hi' }], ...(viaUser && key ? { user: key } : {}) };
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (key && !viaUser) headers['x-session-id'] = key;
    const res = await fetch(`${proxy.url}/api/chat`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, text: await res.text(), arm: res.headers.get('x-rollout-arm') };
  }

  it('streams chat through unchanged but for the model name, routed by key', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `session-${i}`);
    for (const key of keys) {
      const before = seen.length;
      const { status, text, arm } = await chat(key);
      const expected = proxy.router.route(key);
      expect(status).toBe(200);
      expect(arm).toBe(expected.arm);
      expect(seen[before]!.body.model).toBe(expected.model);
      expect(seen[before]!.body.messages).toEqual([{ role: 'user', content: 'hi' }]);
      const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { model: string; message?: { content: string } });
      expect(lines.map((l) => l.message?.content ?? '').join('')).toBe('Hello there');
      expect(new Set(lines.map((l) => l.model))).toEqual(new Set([expected.model]));
    }
    expect(new Set(keys.map((k) => proxy.router.route(k).arm)).size).toBe(2);
  });

  it('takes the key from the body’s user field, and leaves unkeyed and other models alone', async () => {
    const before = seen.length;
    await chat('user-42', 'iceburg', true);
    expect(seen[before]!.body.model).toBe(proxy.router.route('user-42').model);
    await chat(undefined);
    expect(seen[before + 1]!.body.model).toBe('iceburg');
    await chat('session-1', 'llama3');
    expect(seen[before + 2]!.body.model).toBe('llama3');
    const tags = await fetch(`${proxy.url}/api/tags`);
    expect(await tags.json()).toEqual({ models: [{ name: 'iceburg-v1:latest' }] });
  });

  it('passes an upstream error to the client and records outcomes', async () => {
    const plan = parseRolloutPlan({ model: 'iceburg', control: 'broken', candidate: 'broken-too', salt: 'x', share: 0, log: join(tempDir('proxy-'), 'o.jsonl') });
    const broken = await startRolloutProxy({ plan, upstream: `http://${(upstream.address() as AddressInfo).address}:${(upstream.address() as AddressInfo).port}` });
    try {
      const res = await fetch(`${broken.url}/api/chat`, { method: 'POST', headers: { 'x-session-id': 'a' }, body: JSON.stringify({ model: 'iceburg', messages: [] }) });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: "model 'broken' not found" });
      await new Promise((r) => setTimeout(r, 50));
      const [outcome] = await readOutcomes(plan.log);
      expect(outcome).toMatchObject({ key: 'a', arm: 'control', model: 'broken', ok: false, detail: "model 'broken' not found" });
    } finally {
      await broken.close();
    }
    await new Promise((r) => setTimeout(r, 50));
    const outcomes = await readOutcomes(log);
    const routed = outcomes.filter((o) => o.key.startsWith('session-') && o.ok !== undefined);
    expect(routed.length).toBe(12);
    for (const o of routed) expect(o).toMatchObject({ ok: true, tokens: 7, arm: proxy.router.route(o.key).arm });
  });

  it('takes feedback and serves the summary', async () => {
    const fb = await fetch(`${proxy.url}/rollout/feedback`, { method: 'POST', body: JSON.stringify({ key: 'session-3', score: 1 }) });
    expect(fb.status).toBe(200);
    const bad = await fetch(`${proxy.url}/rollout/feedback`, { method: 'POST', body: JSON.stringify({ key: 'session-3', score: 3 }) });
    expect(bad.status).toBe(400);
    const summary = (await (await fetch(`${proxy.url}/rollout/summary`)).json()) as { arms: Record<string, { requests: number }> };
    expect(summary.arms.control!.requests + summary.arms.candidate!.requests).toBe(13);
  });

  it('answers 502 naming the host when Ollama is down', async () => {
    const closed = createServer();
    const host = await listen(closed);
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const plan = parseRolloutPlan({ control: 'a', candidate: 'b', salt: 'x', share: 0.1, log: join(tempDir('proxy-'), 'o.jsonl') });
    const p = await startRolloutProxy({ plan, upstream: host });
    try {
      const res = await fetch(`${p.url}/api/chat`, { method: 'POST', body: JSON.stringify({ model: 'a' }) });
      expect(res.status).toBe(502);
      expect(((await res.json()) as { error: string }).error).toContain(host);
    } finally {
      await p.close();
    }
  });

  it('reads OLLAMA_HOST forms', () => {
    expect(upstreamUrl('127.0.0.1').href).toBe('http://127.0.0.1:11434/');
    expect(upstreamUrl('localhost:8080').href).toBe('http://localhost:8080/');
    expect(upstreamUrl('https://ollama.example').href).toBe('https://ollama.example/');
  });
});
