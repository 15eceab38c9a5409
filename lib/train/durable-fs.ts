import { randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Helpers for files that must survive a crash or power loss whole or not at all. fsync through
 * libuv uses F_FULLFSYNC on macOS, so "synced" there means on the disk, not in its cache.
 */

/** Prefix of every temporary name, so a recovering reader can tell leftovers from real files. */
export const TEMP_PREFIX = '.tmp-';

export function tempName(finalName: string): string {
  return `${TEMP_PREFIX}${finalName}-${randomBytes(4).toString('hex')}`;
}

export async function fsyncFile(filePath: string): Promise<void> {
  // r+ because Windows cannot flush a handle opened read-only.
  const handle = await open(filePath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes entries created, renamed or removed in a folder durable. */
export async function fsyncDir(dirPath: string): Promise<void> {
  let handle;
  try {
    handle = await open(dirPath, 'r');
  } catch (error) {
    // Windows cannot open folders; its renames are durable once they return.
    if (process.platform === 'win32') return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems (network, FUSE) cannot sync folders; nothing better is possible there.
    if (!isErrno(error, 'EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM')) throw error;
  } finally {
    await handle.close();
  }
}

/** Replaces `filePath` with `data` atomically: readers see the old content or the new, never a mix. */
export async function writeFileAtomic(filePath: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(filePath);
  const temp = path.join(dir, tempName(path.basename(filePath)));
  try {
    await writeFile(temp, data, { flag: 'wx' });
    await fsyncFile(temp);
    await rename(temp, filePath);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dir);
}

export function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}
