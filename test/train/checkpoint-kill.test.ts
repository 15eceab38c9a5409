import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { CheckpointStore } from '../../lib/train/checkpoint-store.js';
import { TEST_SEED_ENV, testSeed } from '../helpers/test-seed.js';
import { PATTERN_FILES, patternBytes } from './fixtures/checkpoint-pattern.js';
import { tempDirs } from './fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-kill-');

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/checkpoint-writer.ts', import.meta.url));
const KILLS = 16;

/**
 * Starts the writer, waits for its first completed save (so every round makes progress however
 * loaded the machine is), lets it go on for `delayMs`, then SIGKILLs it.
 */
async function runAndKill(dir: string, delayMs: number): Promise<{ output: string; signal: string | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const exited = new Promise<string | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (/saved \d+/.test(output)) resolve();
    });
    child.on('exit', () => reject(new Error(`writer exited before its first save:\n${errors}`)));
  });
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  child.kill('SIGKILL');
  const signal = await exited;
  return { output, signal };
}

/** A small seeded generator, so a failing sequence of kill times can be replayed. */
function delays(seed: number, count: number, maxMs: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state % maxMs;
  });
}

it(`${TEST_SEED_ENV} replays a kill schedule`, () => {
  const seed = testSeed('checkpoint-kill (replay check)', { [TEST_SEED_ENV]: '424242' });
  expect(seed).toBe(424242);
  expect(delays(seed, KILLS, 60)).toEqual(delays(424242, KILLS, 60));
  expect(delays(seed, KILLS, 60)).not.toEqual(delays(seed + 1, KILLS, 60));
  expect(() => testSeed('checkpoint-kill', { [TEST_SEED_ENV]: 'soon' })).toThrow(/MLX_QLORA_TEST_SEED="soon": expected a non-negative integer/);
});

it(`survives ${KILLS} SIGKILLs at random moments of checkpoint writing`, async () => {
  const dir = path.join(await makeTempDir(), 'checkpoints');
  const seed = testSeed('checkpoint-kill');
  const schedule = delays(seed, KILLS, 60);
  let committed = 0;
  let killedMidWrite = 0;

  for (const [round, delayMs] of schedule.entries()) {
    const context = `seed ${seed}, round ${round}, delay ${delayMs} ms`;
    const { output, signal } = await runAndKill(dir, delayMs);
    expect(signal, context).toBe('SIGKILL');
    const saved = [...output.matchAll(/saved (\d+)/g)].map((match) => Number(match[1]));
    if ((await readdir(dir)).some((entry) => entry.startsWith('.tmp-'))) killedMidWrite++;

    // Look before any recovery runs: what a crashed writer left must already be consistent.
    const inspector = await CheckpointStore.open(dir, {
      keepLast: 2,
      requiredFiles: PATTERN_FILES.map((file) => file.name),
      readOnly: true,
    });
    const pointer = await inspector.readLatestPointer();
    const listing = await inspector.list();
    expect(listing.skipped, context).toEqual([]);
    if (committed === 0 && saved.length === 0 && pointer.name === undefined) continue;

    expect(pointer.name, context).toBeDefined();
    const latest = await inspector.load(pointer.name ?? '');
    // Never behind a checkpoint the writer reported, nor behind an earlier round.
    expect(latest.step, context).toBeGreaterThanOrEqual(Math.max(committed, ...saved));
    for (const [fileIndex, file] of PATTERN_FILES.entries()) {
      const bytes = await readFile(latest.files[file.name] ?? '');
      expect(bytes.equals(patternBytes(latest.step, fileIndex, 0, file.size)), `${context}: ${file.name}`).toBe(true);
    }
    const resumable = await inspector.loadLatest();
    expect(resumable.checkpoint?.step, context).toBe(latest.step);
    committed = latest.step;
  }

  // Each round saved at least once before its kill.
  expect(committed).toBeGreaterThanOrEqual(KILLS);
  // The writer does nothing but save, so kills land inside a write (a temp folder left behind);
  // if none did, this test tested nothing.
  expect(killedMidWrite).toBeGreaterThan(0);

  await CheckpointStore.open(dir, { keepLast: 2 });
  const left = (await readdir(dir)).filter((entry) => entry.startsWith('.'));
  expect(left).toEqual([]);
});
