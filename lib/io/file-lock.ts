/**
 * A lock file that one process at a time holds: created with O_EXCL (so of two takers exactly
 * one wins), holding its pid, host and a token. A lock whose pid no longer exists on this host
 * was left by a killed process and is taken over; one from another host (a shared disk) cannot
 * be checked and is respected.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { z } from 'zod';
import { isErrno } from './atomic-file.js';

const lockSchema = z.object({
  pid: z.int().min(1),
  host: z.string(),
  started: z.string(),
  /** Tells this holder's lock from a later one with a recycled pid. */
  token: z.string(),
});
type LockContent = z.infer<typeof lockSchema>;

export interface FileLock {
  readonly path: string;
  /** Removes the lock if it is still this holder's. */
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
  return parsed.success ? { kind: 'held', text, lock: parsed.data } : { kind: 'unreadable', reason: 'it is not a lock file' };
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

/** Moves a stale lock aside; puts it back if another taker replaced it in between. */
async function removeStale(lockPath: string, judged: string): Promise<void> {
  const aside = `${lockPath}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined);
  if (moved !== judged) await link(aside, lockPath).catch(() => undefined);
  await rm(aside, { force: true });
}

/**
 * Takes the lock at `lockPath`, taking over a stale one. `busy(detail)` makes the error thrown
 * when a live holder has it, so each user can say what the lock protects.
 */
export async function acquireFileLock(lockPath: string, busy: (detail: string) => Error): Promise<FileLock> {
  const mine: LockContent = { pid: process.pid, host: hostname(), started: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  const text = `${JSON.stringify(mine)}\n`;
  // Each pass either creates the lock, fails for a live holder, or removes a stale one; a few
  // passes only matter when several takers start at once.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await writeFile(lockPath, text, { flag: 'wx' });
      return { path: lockPath, release: () => releaseLock(lockPath, mine.token) };
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
    const holder = await readHolder(lockPath);
    if (holder.kind === 'gone') continue;
    if (holder.kind === 'unreadable') throw busy(`${lockPath} cannot be read: ${holder.reason}`);
    const { lock } = holder;
    if (lock.host !== mine.host) throw busy(`pid ${lock.pid} on host ${lock.host}, since ${lock.started}`);
    if (processExists(lock.pid)) throw busy(`pid ${lock.pid}, since ${lock.started}`);
    await removeStale(lockPath, holder.text);
  }
  throw busy('other processes keep taking the lock');
}

async function releaseLock(lockPath: string, token: string): Promise<void> {
  const holder = await readHolder(lockPath);
  if (holder.kind === 'held' && holder.lock.token === token) await rm(lockPath, { force: true });
}
