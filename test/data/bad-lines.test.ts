/**
 * Acceptance: 1,000 good lines and 50 bad ones of 10 kinds yield 1,000 records and 50 reported
 * errors with the right line numbers and reasons, both from the reader and through prepare.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { readInputRecords } from '../../lib/data/record-reader.js';
import { chatmlModel } from '../fixtures/data-model.js';

const BAD_KINDS: Array<{ reason: string; line: Buffer }> = [
  { reason: 'broken-json', line: Buffer.from('{"messages": [{"role": "user", "content": "hi"}') },
  { reason: 'not-an-object', line: Buffer.from('[1, 2, 3]') },
  { reason: 'schema', line: Buffer.from('{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}') },
  { reason: 'empty-messages', line: Buffer.from('{"messages": []}') },
  { reason: 'unknown-role', line: Buffer.from('{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}') },
  { reason: 'invalid-utf8', line: Buffer.concat([Buffer.from('{"messages": [{"role": "user", "content": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]) },
  { reason: 'no-assistant-turn', line: Buffer.from('{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}') },
  { reason: 'empty-content', line: Buffer.from('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "   "}]}') },
  { reason: 'bad-weight', line: Buffer.from('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 0.5}]}') },
  { reason: 'line-too-long', line: Buffer.from(`{"messages": [{"role": "user", "content": "${'z'.repeat(9000)}"}]}`) },
];

function buildFile(path: string): Map<number, string> {
  const expected = new Map<number, string>();
  const lines: Buffer[] = [];
  let good = 0;
  let bad = 0;
  while (good < 1000 || bad < 50) {
    // Every 21st line is bad, cycling through the kinds.
    if (bad < 50 && (lines.length + 1) % 21 === 0) {
      const kind = BAD_KINDS[bad % BAD_KINDS.length]!;
      lines.push(kind.line);
      expected.set(lines.length, kind.reason);
      bad++;
    } else if (good < 1000) {
      lines.push(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: `Question number ${good}?` }, { role: 'assistant', content: `Answer number ${good}.` }] })));
      good++;
    } else {
      lines.push(BAD_KINDS[bad % BAD_KINDS.length]!.line);
      expected.set(lines.length, BAD_KINDS[bad % BAD_KINDS.length]!.reason);
      bad++;
    }
  }
  writeFileSync(path, Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  return expected;
}

describe('1,000 good lines and 50 bad ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlxq-bad-'));
  const path = join(dir, 'export.jsonl');
  const expected = buildFile(path);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the reader yields 1,000 records and 50 rejections at the right lines', async () => {
    const got = new Map<number, string>();
    let records = 0;
    const file = { path, format: 'chatml' as const, detected: true, bytes: 0 };
    for await (const o of readInputRecords(file, { mapping: resolveFieldMapping(), reasoning: 'omit', maxLineBytes: 4096 })) {
      if (o.kind === 'record') records++;
      if (o.kind === 'rejected') got.set(o.rejection.line, o.rejection.reason);
    }
    expect(records).toBe(1000);
    expect(got.size).toBe(50);
    expect(new Set(got.values()).size).toBe(10);
    expect([...got.entries()].sort((a, b) => a[0] - b[0])).toEqual([...expected.entries()].sort((a, b) => a[0] - b[0]));
  });

  it('prepare writes 1,000 records and reports the 50 errors by reason and line', async () => {
    const out = join(dir, 'prepared');
    const { report, manifest } = await prepareDataset(
      { inputs: [path], outDir: out, maxLineBytes: 4096, split: { valid: 0, test: 0 } },
      { tokenizer: chatmlModel() },
    );
    expect(manifest.splits.train.records).toBe(1000);
    expect(Object.values(report.errors).reduce((a, b) => a + b, 0)).toBe(50);
    expect(report.errors['broken-json']).toBe(5);
    const logged = readFileSync(join(out, 'rejections.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; reason: string; file: string });
    expect(logged.map((r) => [r.line, r.reason]).sort((a, b) => (a[0] as number) - (b[0] as number))).toEqual([...expected.entries()].sort((a, b) => a[0] - b[0]));
    expect(logged.every((r) => r.file === path)).toBe(true);
  });

  it('--strict stops at the first bad line, naming it', async () => {
    const first = Math.min(...expected.keys());
    await expect(
      prepareDataset({ inputs: [path], outDir: join(dir, 'strict'), strict: true, maxLineBytes: 4096 }, { tokenizer: chatmlModel() }),
    ).rejects.toThrow(`${path}:${first}: ${expected.get(first)}`);
  });
});
