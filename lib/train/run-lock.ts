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
import path from 'node:path';
import { acquireFileLock, type FileLock } from '../io/file-lock.js';
import { TrainingError } from './training-error.js';

export const RUN_LOCK_FILE = 'run.lock';

export type RunLock = FileLock;

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
  return acquireFileLock(lockPath, (detail) => busy(dir, lockPath, detail));
}
