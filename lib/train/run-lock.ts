/**
 * One training run per output folder. A second run on the same folder would clean up the first
 * one's in-progress checkpoint folders as crash leftovers, and both would append to the same
 * metrics.jsonl and `latest`. So a run holds `run.lock` (its pid and host) in the folder while it
 * works. The lock is created with O_EXCL, so of two runs starting together exactly one gets it.
 *
 * A run killed outright (SIGKILL, a second Ctrl+C, a power cut) leaves its lock behind: a lock
 * whose pid no longer exists on this host is stale and taken over. A lock from another host (a
 * shared disk) cannot be checked and is respected.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { isErrno } from './durable-fs.js';
import { TrainingError } from './training-error.js';

export const RUN_LOCK_FILE = 'run.lock';

const lockSchema = z.object({
  pid: z.int().min(1),
  host: z.string(),
  started: z.string(),
  /** Tells this run's lock from a later one with a recycled pid. */
  token: z.string(),
});
type LockContent = z.infer<typeof lockSchema>;

export interface RunLock {
  readonly path: string;
  /** Removes the lock if it is still this run's. */
  release(): Promise<void>;
}

type Holder = { kind: 'gone' } | { kind: 'unreadable'; reason: string } | { kind: 'held'; text: string; lock: LockContent };

async function readHolder(lockPath: string): Promise<Holder> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return { kind: 'gone' };
    return { kind: 'unreadable', reason: String(error) };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'unreadable', reason: text.length === 0 ? 'it is empty' : 'it is not JSON' };
  }
  const parsed = lockSchema.safeParse(json);
  return parsed.success ? { kind: 'held', text, lock: parsed.data } : { kind: 'unreadable', reason: 'it is not a run lock' };
}

/** Whether a process with this pid exists here (EPERM: it does, under another user). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

function busy(dir: string, lockPath: string, detail: string): TrainingError {
  return new TrainingError(
    `output folder ${dir} is in use by another training run (${detail}); wait for it to end or choose another output. ` +
      `If no run is using the folder, delete ${lockPath}`,
    'output_locked',
  );
}

/** Takes the lock of run folder `dir`, taking over a stale one; throws naming the folder when held. */
export async function acquireRunLock(dir: string): Promise<RunLock> {
  const lockPath = path.join(dir, RUN_LOCK_FILE);
  const mine: LockContent = { pid: process.pid, host: hostname(), started: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  const text = `${JSON.stringify(mine)}\n`;
  // Each pass either creates the lock, fails for a live holder, or removes a stale one; a few
  // passes only matter when several runs start on the same folder at once.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await writeFile(lockPath, text, { flag: 'wx' });
      return { path: lockPath, release: () => releaseLock(lockPath, mine.token) };
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
    const holder = await readHolder(lockPath);
    if (holder.kind === 'gone') continue;
    if (holder.kind === 'unreadable') throw busy(dir, lockPath, `${lockPath} cannot be read: ${holder.reason}`);
    const { lock } = holder;
    if (lock.host !== mine.host) throw busy(dir, lockPath, `pid ${lock.pid} on host ${lock.host}, since ${lock.started}`);
    if (processExists(lock.pid)) throw busy(dir, lockPath, `pid ${lock.pid}, since ${lock.started}`);
    // Stale. Move it aside rather than delete it, then check that what moved is the lock judged
    // stale: another starting run may have taken it over in between, and its lock goes back.
    const aside = path.join(dir, `${RUN_LOCK_FILE}.stale-${randomBytes(4).toString('hex')}`);
    try {
      await rename(lockPath, aside);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) continue;
      throw error;
    }
    const moved = await readFile(aside, 'utf8').catch(() => undefined);
    if (moved !== holder.text) await link(aside, lockPath).catch(() => undefined);
    await rm(aside, { force: true });
  }
  throw busy(dir, lockPath, 'other runs keep taking the lock');
}

async function releaseLock(lockPath: string, token: string): Promise<void> {
  const holder = await readHolder(lockPath);
  if (holder.kind === 'held' && holder.lock.token === token) await rm(lockPath, { force: true });
}
