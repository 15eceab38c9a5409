/**
 * prepare --since / --replay / --where: a cumulative export prepared again against last month's
 * dataset takes exactly the new records (checked by their text, read back from the emitted copy),
 * replays a seeded share of the old ones (the share recomputed here from sha256 directly), and
 * --where keeps exactly the records whose metadata say so; the hash lists chain month to month.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { CONTENT_HASHES_FILE, readSelection, type RecordSelectionInput } from '../../lib/data/since-filter.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

let fx: TrainFixture;
let root: string;

const CATEGORIES = ['code', 'research', 'synthesis'] as const;

function line(i: number): string {
  return JSON.stringify({
    messages: [
      { role: 'user', content: `Question number ${i} about ice?` },
      { role: 'assistant', content: `Answer number ${i}: ice is cold.` },
    ],
    metadata: { conversation_id: `c${i}`, category: CATEGORIES[i % 3], quality_score: 0.9, team: { name: i % 2 === 0 ? 'even' : 'odd' } },
  });
}

function writeExport(name: string, ids: number[]): string {
  const file = join(root, `${name}.jsonl`);
  writeFileSync(file, ids.map(line).join('\n') + '\n');
  return file;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** The question numbers of the records a prepared folder took, from its emitted ChatML copy. */
function takenIds(out: string): number[] {
  const lines = readFileSync(join(out, 'emit', 'train.chatml.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
  return lines.map((l) => Number(/Question number (\d+)/.exec(JSON.stringify(JSON.parse(l)))![1])).sort((a, b) => a - b);
}

async function prepare(input: string, out: string, selection: RecordSelectionInput = {}) {
  const outDir = join(root, out);
  const { report } = await prepareDataset({ model: fx.modelDir, inputs: [input], outDir, maxSeqLength: 64, split: { valid: 0, test: 0 }, nearDuplicateThreshold: null, emit: ['chatml'], selection });
  return { outDir, report, counts: readSelection(outDir) };
}

beforeAll(async () => {
  fx = await makeTrainFixture(2);
  root = tempDir('prepare-since-');
}, 120_000);
afterAll(() => fx?.cleanup());

describe('prepare --since', () => {
  it('takes exactly the 10 new records of a cumulative export, and the hash lists chain', async () => {
    const first = await prepare(writeExport('month1', range(0, 30)), 'm1');
    expect(first.report.totals.kept).toBe(30);
    expect(readFileSync(join(first.outDir, CONTENT_HASHES_FILE)).length).toBe(30 * 32);
    // The new export repeats the old records (in another order) and adds ten.
    const second = await prepare(writeExport('month2', [...range(30, 40), ...range(0, 30).reverse()]), 'm2', { since: join(first.outDir, 'manifest.json') });
    expect(second.report.totals.kept).toBe(10);
    expect(takenIds(second.outDir)).toEqual(range(30, 40));
    expect(second.counts).toMatchObject({ new: 10, notNew: 30, replayed: 0 });
    expect(readFileSync(join(second.outDir, CONTENT_HASHES_FILE)).length).toBe(40 * 32);
    const third = await prepare(writeExport('month3', range(0, 45)), 'm3', { since: second.outDir });
    expect(takenIds(third.outDir)).toEqual(range(40, 45));
  }, 120_000);

  it('--replay takes back the seeded share of earlier records', async () => {
    const before = await prepare(writeExport('r1', range(0, 40)), 'r1');
    const exportFile = writeExport('r2', range(0, 50));
    const a = await prepare(exportFile, 'r2a', { since: before.outDir, replay: 0.5, replaySeed: 7 });
    const b = await prepare(exportFile, 'r2b', { since: before.outDir, replay: 0.5, replaySeed: 7 });
    // Independently: the record's content hash, then sha256("seed:hash") read as a 48-bit fraction.
    const hashOf = (i: number) => createHash('sha256').update(`user\u0001Question number ${i} about ice?\u0002assistant\u0001Answer number ${i}: ice is cold.`).digest('hex');
    const expected = range(0, 40).filter((i) => createHash('sha256').update(`7:${hashOf(i)}`).digest().readUIntBE(0, 6) / 2 ** 48 < 0.5);
    expect(expected.length).toBeGreaterThan(10);
    expect(expected.length).toBeLessThan(30);
    expect(takenIds(a.outDir)).toEqual([...expected, ...range(40, 50)]);
    expect(takenIds(b.outDir)).toEqual(takenIds(a.outDir));
    expect(a.counts).toMatchObject({ new: 10, replayed: expected.length, notNew: 40 - expected.length });
  }, 120_000);
});

describe('mlx-qlora prepare --since', () => {
  it('takes the new records and prints what it left out', async () => {
    const earlier = await prepare(writeExport('cli1', range(0, 20)), 'cli1');
    const out = join(root, 'cli2');
    const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
    const args = ['prepare', '--model', fx.modelDir, '--input', writeExport('cli2', range(0, 30)), '--out', out, '--since', join(earlier.outDir, 'manifest.json'), '--where', 'category=code', '--valid-fraction', '0', '--test-fraction', '0', '--no-near-dup', '--max-seq-length', '64', '--no-progress'];
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', cli, ...args]);
    // Of 20..29 the code ones (21, 24, 27) are new; 0..19 has 7 code records, all left out as old.
    expect(stdout).toMatch(/Selection: 3 new records, 7 already in .* left out, 0 earlier records replayed, 20 not matching --where category=code left out/);
    expect(readSelection(out)).toMatchObject({ new: 3, notNew: 7, notMatchingWhere: 20 });
  }, 120_000);
});

describe('prepare --where', () => {
  it('keeps the records whose metadata match every condition and counts the rest', async () => {
    const exportFile = writeExport('where', range(0, 30));
    const code = await prepare(exportFile, 'w-code', { where: ['category=code'] });
    expect(takenIds(code.outDir)).toEqual(range(0, 30).filter((i) => i % 3 === 0));
    expect(code.counts.notMatchingWhere).toBe(20);
    const both = await prepare(exportFile, 'w-both', { where: ['metadata.category=code', 'team.name=even'] });
    expect(takenIds(both.outDir)).toEqual(range(0, 30).filter((i) => i % 6 === 0));
    expect(both.counts.notMatchingWhere).toBe(25);
    await expect(prepare(exportFile, 'w-bad', { where: ['category'] })).rejects.toThrow(/selection\.where\.0.*FIELD=VALUE/);
  }, 120_000);
});
