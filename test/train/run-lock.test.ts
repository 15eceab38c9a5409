import { spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireRunLock, RUN_LOCK_FILE } from '../../lib/train/run-lock.js';
import { tempDirs } from './fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-lock-');

/** The pid of a process that has exited: a lock holding it is stale. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

const lockOf = (pid: number, host = hostname()) => `${JSON.stringify({ pid, host, started: '2026-01-02T03:04:05.000Z', token: 'feedface' })}\n`;

describe('run lock', () => {
  it('holds pid and host, refuses a second holder naming the folder, and is gone after release', async () => {
    const dir = await makeTempDir();
    const lock = await acquireRunLock(dir);
    expect(lock.path).toBe(path.join(dir, RUN_LOCK_FILE));
    expect(JSON.parse(await readFile(lock.path, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    // The same process counts as a live holder: two runs in one process must not share a folder.
    await expect(acquireRunLock(dir)).rejects.toMatchObject({
      code: 'output_locked',
      message: expect.stringContaining(`output folder ${dir} is in use by another training run (pid ${process.pid}`),
    });
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
    const again = await acquireRunLock(dir);
    await again.release();
  });

  it('takes over a stale lock whose process is gone', async () => {
    const dir = await makeTempDir();
    await writeFile(path.join(dir, RUN_LOCK_FILE), lockOf(await deadPid()));
    const lock = await acquireRunLock(dir);
    expect(JSON.parse(await readFile(lock.path, 'utf8'))).toMatchObject({ pid: process.pid });
    await lock.release();
    // Nothing left aside.
    expect(await readdir(dir)).toEqual([]);
  });

  it('respects a lock from another host, and an unreadable one, naming the lock file', async () => {
    const dir = await makeTempDir();
    const lockPath = path.join(dir, RUN_LOCK_FILE);
    await writeFile(lockPath, lockOf(await deadPid(), 'other-machine.local'));
    await expect(acquireRunLock(dir)).rejects.toThrow(new RegExp(`on host other-machine\\.local.*delete ${lockPath.replace(/[.]/g, '\\.')}`));
    await writeFile(lockPath, '');
    await expect(acquireRunLock(dir)).rejects.toThrow(/cannot be read: it is empty/);
    expect(await readFile(lockPath, 'utf8')).toBe('');
  });

  it('release leaves a lock that is no longer its own', async () => {
    const dir = await makeTempDir();
    const lock = await acquireRunLock(dir);
    await writeFile(lock.path, lockOf(process.pid));
    await lock.release();
    expect(await readFile(lock.path, 'utf8')).toBe(lockOf(process.pid));
  });
});
