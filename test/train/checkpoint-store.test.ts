import { mkdir, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { CheckpointStore, type CheckpointFileWriter } from '../../lib/train/checkpoint-store.js';
import { libraryVersion } from '../../lib/config/library-version.js';
import { type TrainerStateInput } from '../../lib/train/trainer-state.js';
import { tempDirs } from './fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-ckpt-');

const HASH = 'ab'.repeat(32);
const REQUIRED = ['adapters.safetensors', 'optimizer.safetensors'];

function stateAt(step: number, evalLoss: number | null = null): TrainerStateInput {
  return {
    step,
    epoch: Math.floor(step / 50),
    data_cursor: { file: 0, offset: step * 10, order: [2, 0, 1] },
    dropout_keys: { seed: 42, counter: step },
    schedule: { total_steps: 1000, learning_rate: 1e-4 },
    best: evalLoss === null ? null : { metric: evalLoss, step },
    eval_loss: evalLoss,
    evals_since_best: 0,
    nonfinite_count: 0,
    config_hash: HASH,
  };
}

function writersFor(step: number): CheckpointFileWriter[] {
  return REQUIRED.map((name) => ({
    name,
    write: (filePath: string) => writeFile(filePath, `${name}@${step}`),
  }));
}

let dir: string;
beforeEach(async () => {
  dir = path.join(await makeTempDir(), 'checkpoints');
});

const open = (keepLast = 3) => CheckpointStore.open(dir, { keepLast, requiredFiles: REQUIRED });
const entries = async () => (await readdir(dir)).sort();

describe('saving', () => {
  it('writes the folder, the state with its manifest, and the latest pointer', async () => {
    const store = await open();
    const saved = await store.save(stateAt(120, 1.5), writersFor(120));
    expect(saved.name).toBe('step-000120');
    expect(await entries()).toEqual(['latest', 'step-000120']);
    expect((await readdir(path.join(dir, 'step-000120'))).sort()).toEqual([...REQUIRED, 'trainer-state.json'].sort());
    expect(await readFile(path.join(dir, 'latest'), 'utf8')).toBe('step-000120\n');

    const onDisk = JSON.parse(await readFile(path.join(dir, 'step-000120', 'trainer-state.json'), 'utf8'));
    expect(onDisk).toMatchObject({ ...stateAt(120, 1.5), format_version: 1, library_version: libraryVersion() });
    expect(onDisk.files).toEqual({ 'adapters.safetensors': 24, 'optimizer.safetensors': 25 });
    expect(Date.now() - Date.parse(onDisk.created_at)).toBeLessThan(60_000);
    expect(libraryVersion()).toBe('0.1.0');

    const { checkpoint, skipped } = await (await open()).loadLatest();
    expect(skipped).toEqual([]);
    expect(checkpoint?.step).toBe(120);
    expect(checkpoint?.state.data_cursor).toEqual({ file: 0, offset: 1200, order: [2, 0, 1] });
    expect(await readFile(checkpoint?.files['optimizer.safetensors'] ?? '', 'utf8')).toBe('optimizer.safetensors@120');
  });

  it('pads step numbers to six digits and sorts numerically beyond', async () => {
    const store = await open(5);
    for (const step of [5, 999_999, 1_000_000]) await store.save(stateAt(step), writersFor(step));
    const { checkpoints } = await store.list();
    expect(checkpoints.map((c) => c.name)).toEqual(['step-000005', 'step-999999', 'step-1000000']);
    expect((await store.loadLatest()).checkpoint?.step).toBe(1_000_000);
  });

  it('replaces a checkpoint saved again at the same step', async () => {
    const store = await open();
    await store.save(stateAt(100), writersFor(100));
    await store.save({ ...stateAt(100), nonfinite_count: 2 }, [
      { name: 'adapters.safetensors', write: (p) => writeFile(p, 'new adapter') },
      { name: 'optimizer.safetensors', write: (p) => writeFile(p, 'new optimizer') },
    ]);
    expect(await entries()).toEqual(['latest', 'step-000100']);
    const { checkpoint } = await store.loadLatest();
    expect(checkpoint?.state.nonfinite_count).toBe(2);
    expect(await readFile(checkpoint?.files['adapters.safetensors'] ?? '', 'utf8')).toBe('new adapter');
  });

  it('leaves the previous checkpoint and no temp folder when a writer fails', async () => {
    const store = await open();
    await store.save(stateAt(10), writersFor(10));
    const failing: CheckpointFileWriter[] = [
      { name: 'adapters.safetensors', write: (p) => writeFile(p, 'partial') },
      { name: 'optimizer.safetensors', write: () => Promise.reject(new Error('disk full')) },
    ];
    await expect(store.save(stateAt(20), failing)).rejects.toThrow('disk full');
    expect(await entries()).toEqual(['latest', 'step-000010']);
    expect((await store.loadLatest()).checkpoint?.step).toBe(10);
  });

  it('fails when a writer does not create its file', async () => {
    const store = await open();
    const lazy = [...writersFor(1).slice(0, 1), { name: 'optimizer.safetensors', write: async () => {} }];
    await expect(store.save(stateAt(1), lazy)).rejects.toThrow('checkpoint writer for optimizer.safetensors did not create the file');
    expect(await entries()).toEqual([]);
  });

  it('checks the state and the file names before writing anything', async () => {
    const store = await open();
    await expect(store.save({ ...stateAt(1), step: -1 }, writersFor(1))).rejects.toThrow();
    await expect(store.save({ ...stateAt(1), config_hash: 'abc' }, writersFor(1))).rejects.toThrow(/sha256/);
    await expect(store.save(stateAt(1), [...writersFor(1), ...writersFor(1).slice(0, 1)])).rejects.toThrow('given twice');
    await expect(store.save(stateAt(1), writersFor(1).slice(1))).rejects.toThrow('adapters.safetensors is required but has no writer');
    for (const name of ['../escape', 'a/b', '.hidden', 'trainer-state.json', '']) {
      await expect(store.save(stateAt(1), [...writersFor(1), { name, write: async () => {} }])).rejects.toThrow(/invalid checkpoint file name/);
    }
    expect(await entries()).toEqual([]);
  });

  it('rejects keepLast below 1', async () => {
    await expect(CheckpointStore.open(dir, { keepLast: 0 })).rejects.toThrow(RangeError);
  });
});

describe('retention', () => {
  it('keeps the newest K and the best by eval loss', async () => {
    const store = await open(3);
    const losses: Record<number, number | null> = { 10: 2.0, 20: 1.2, 30: 0.9, 40: 1.0, 50: null, 60: 1.1, 70: 0.95, 80: null, 90: 1.3, 100: 1.4 };
    const removedAt: Record<number, string[]> = {};
    for (const step of Object.keys(losses).map(Number)) {
      removedAt[step] = (await store.save(stateAt(step, losses[step] ?? null), writersFor(step))).removed;
    }
    expect(await entries()).toEqual(['latest', 'step-000030', 'step-000080', 'step-000090', 'step-000100']);
    // At step 40 the best (30) was among the newest three, so the oldest went; at 50, 20 went.
    expect(removedAt[40]).toEqual(['step-000010']);
    expect(removedAt[50]).toEqual(['step-000020']);
    expect(removedAt[70]).toEqual(['step-000040']);
    expect(removedAt[100]).toEqual(['step-000070']);
  });

  it('keeps exactly K when the best is among the newest, and the earlier of equal bests', async () => {
    const store = await open(2);
    for (const [step, loss] of [[1, 3], [2, 1], [3, 1], [4, 2], [5, 4]] as const) await store.save(stateAt(step, loss), writersFor(step));
    expect(await entries()).toEqual(['latest', 'step-000002', 'step-000004', 'step-000005']);
    await store.save(stateAt(6, 0.5), writersFor(6));
    expect(await entries()).toEqual(['latest', 'step-000005', 'step-000006']);
  });

  it('keeps only the newest K without evaluations, and removes unusable folders', async () => {
    const store = await open(2);
    for (const step of [1, 2, 3]) await store.save(stateAt(step), writersFor(step));
    await mkdir(path.join(dir, 'step-000004'));
    await store.save(stateAt(5), writersFor(5));
    expect(await entries()).toEqual(['latest', 'step-000003', 'step-000005']);
  });
});

describe('loading validates and falls back', () => {
  async function threeCheckpoints(): Promise<CheckpointStore> {
    const store = await open(5);
    for (const step of [10, 20, 30]) await store.save(stateAt(step), writersFor(step));
    return store;
  }
  const step30 = (...parts: string[]) => path.join(dir, 'step-000030', ...parts);

  it.each([
    ['a missing trainer-state.json', () => rm(step30('trainer-state.json')), 'trainer-state.json is missing'],
    ['a torn trainer-state.json', () => truncate(step30('trainer-state.json'), 40), /^trainer-state.json is not valid JSON/],
    [
      'a trainer state of the wrong shape',
      async () => {
        const state = JSON.parse(await readFile(step30('trainer-state.json'), 'utf8'));
        await writeFile(step30('trainer-state.json'), JSON.stringify({ ...state, epoch: 'one' }));
      },
      'trainer-state.json: epoch: expected a number, got "one"',
    ],
    [
      'a state for another step',
      async () => {
        const state = JSON.parse(await readFile(step30('trainer-state.json'), 'utf8'));
        await writeFile(step30('trainer-state.json'), JSON.stringify({ ...state, step: 31 }));
      },
      'trainer-state.json is for step 31',
    ],
    ['a missing file', () => rm(step30('optimizer.safetensors')), 'optimizer.safetensors is missing'],
    ['a truncated file', () => truncate(step30('adapters.safetensors'), 3), 'adapters.safetensors is 3 bytes, the manifest says 23'],
  ])('skips a folder with %s and resumes from the one before', async (_what, damage, reason) => {
    const store = await threeCheckpoints();
    await damage();
    const { checkpoint, skipped } = await store.loadLatest();
    expect(checkpoint?.name).toBe('step-000020');
    expect(skipped).toHaveLength(1);
    expect(skipped[0]?.name).toBe('step-000030');
    expect(skipped[0]?.reason).toMatch(typeof reason === 'string' ? new RegExp(`^${reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : reason);
    const listing = await store.list();
    expect(listing.checkpoints.map((c) => c.step)).toEqual([10, 20]);
  });

  it('reads a checkpoint written when dropout_keys was called rng_state', async () => {
    const store = await threeCheckpoints();
    const { dropout_keys: keys, ...state } = JSON.parse(await readFile(step30('trainer-state.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(step30('trainer-state.json'), JSON.stringify({ ...state, rng_state: keys }));
    const { checkpoint, skipped } = await store.loadLatest();
    expect(skipped).toEqual([]);
    expect(checkpoint?.state.dropout_keys).toEqual({ seed: 42, counter: 30 });
  });

  it('skips a folder that lacks a file the store requires', async () => {
    const store = await threeCheckpoints();
    const strict = await CheckpointStore.open(dir, { keepLast: 5, requiredFiles: [...REQUIRED, 'adapter_config.json'] });
    const { checkpoint, skipped } = await strict.loadLatest();
    expect(checkpoint).toBeUndefined();
    expect(skipped.map((s) => s.reason)).toEqual(['has no adapter_config.json', 'has no adapter_config.json', 'has no adapter_config.json']);
    expect((await store.loadLatest()).checkpoint?.step).toBe(30);
  });

  it('falls back to the newest good one before what a dangling latest names', async () => {
    const store = await threeCheckpoints();
    await rm(step30(), { recursive: true });
    const { checkpoint, skipped } = await store.loadLatest();
    expect(checkpoint?.step).toBe(20);
    expect(skipped).toEqual([{ name: 'step-000030', reason: 'named by latest but missing' }]);
  });

  it('follows latest rather than a newer uncommitted folder', async () => {
    const store = await threeCheckpoints();
    await writeFile(path.join(dir, 'latest'), 'step-000020\n');
    expect((await store.loadLatest()).checkpoint?.step).toBe(20);
  });

  it('uses the newest good folder when latest is missing or garbage', async () => {
    const store = await threeCheckpoints();
    await rm(path.join(dir, 'latest'));
    expect(await store.loadLatest()).toMatchObject({ checkpoint: { step: 30 }, skipped: [] });
    await writeFile(path.join(dir, 'latest'), '../../etc\n');
    const { checkpoint, skipped } = await store.loadLatest();
    expect(checkpoint?.step).toBe(30);
    expect(skipped).toEqual([{ name: 'latest', reason: 'latest does not name a checkpoint: "../../etc\\n"' }]);
  });

  it('reports nothing to resume in an empty folder', async () => {
    expect(await (await open()).loadLatest()).toEqual({ checkpoint: undefined, skipped: [] });
  });

  it('load() names what is wrong', async () => {
    const store = await threeCheckpoints();
    await expect(store.load('step-000031')).rejects.toThrow('checkpoint step-000031: trainer-state.json is missing');
    await expect(store.load('latest')).rejects.toThrow('not a checkpoint folder name');
  });
});

describe('recovery after a crashed writer', () => {
  it('removes temp folders, temp pointers and half-deleted folders', async () => {
    const store = await open();
    await store.save(stateAt(10), writersFor(10));
    await mkdir(path.join(dir, '.tmp-step-000020-0badc0de'));
    await writeFile(path.join(dir, '.tmp-step-000020-0badc0de', 'adapters.safetensors'), 'half');
    await writeFile(path.join(dir, '.tmp-latest-12345678'), 'step-0000');
    await mkdir(path.join(dir, '.deleting-step-000005-abcdef01'));
    await open();
    expect(await entries()).toEqual(['latest', 'step-000010']);
  });

  it('puts back a checkpoint swapped out for a re-save that did not finish', async () => {
    const store = await open();
    await store.save(stateAt(10), writersFor(10));
    await store.save(stateAt(20), writersFor(20));
    // The crash fell between moving the old step-000020 aside and moving the new one in.
    await rename(path.join(dir, 'step-000020'), path.join(dir, '.trash-step-000020-1234abcd'));
    await mkdir(path.join(dir, '.tmp-step-000020-99999999'));
    const reopened = await open();
    expect(await entries()).toEqual(['latest', 'step-000010', 'step-000020']);
    expect((await reopened.loadLatest()).checkpoint?.step).toBe(20);
  });

  it('drops the swapped-out copy when the new one made it', async () => {
    const store = await open();
    await store.save(stateAt(20), writersFor(20));
    await mkdir(path.join(dir, '.trash-step-000020-1234abcd'));
    await open();
    expect(await entries()).toEqual(['latest', 'step-000020']);
  });
});
