/**
 * A folder of files replaced as a whole, the way checkpoints are written: the files go into a
 * temporary sibling folder, are synced, and the folder is renamed into place. A reader (or a run
 * killed half-way) sees the old folder or the new one, never a mix of files from both.
 *
 * POSIX cannot rename a folder over a non-empty one, so an existing folder is first renamed to a
 * `.trash-` name; a crash between the two renames leaves no folder under the final name, and
 * `recoverFolder` renames the old one back.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, fsyncFile, tempName, TEMP_PREFIX } from './atomic-file.js';

const TRASH_PREFIX = '.trash-';

/** One file of a folder written by writeFolderAtomically. */
export interface FolderFileWriter {
  /** File name inside the folder, e.g. "adapters.safetensors". */
  name: string;
  /** Writes the complete file at `filePath`, which does not exist yet; it is fsynced after. */
  write: (filePath: string) => Promise<void>;
}

/** Writes `parent/name/` from scratch with `writers`, replacing any folder there atomically. */
export async function writeFolderAtomically(parent: string, name: string, writers: readonly FolderFileWriter[]): Promise<string> {
  return replaceFolderAtomically(parent, name, async (temp) => {
    for (const writer of writers) await writer.write(path.join(temp, writer.name));
  });
}

/**
 * Builds `parent/name/` by `fill`ing an empty temporary folder, syncs every file in it, and swaps
 * it in for any folder already there.
 */
export async function replaceFolderAtomically(parent: string, name: string, fill: (temp: string) => Promise<void>): Promise<string> {
  const final = path.join(parent, name);
  const temp = path.join(parent, tempName(name));
  await mkdir(temp);
  try {
    await fill(temp);
    for (const file of await readdir(temp)) await fsyncFile(path.join(temp, file));
    await fsyncDir(temp);
    const trash = (await stat(final).catch(() => undefined)) ? path.join(parent, `${TRASH_PREFIX}${name}-${randomBytes(4).toString('hex')}`) : undefined;
    if (trash) await rename(final, trash);
    await rename(temp, final);
    await fsyncDir(parent);
    if (trash) await rm(trash, { recursive: true, force: true });
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
  return final;
}

/** Clears what an interrupted `writeFolderAtomically(parent, name)` left. Needs the run lock. */
export async function recoverFolder(parent: string, name: string): Promise<void> {
  const entries = await readdir(parent).catch(() => [] as string[]);
  let present = entries.includes(name);
  let changed = false;
  for (const entry of entries) {
    const entryPath = path.join(parent, entry);
    if (entry.startsWith(`${TEMP_PREFIX}${name}-`)) {
      await rm(entryPath, { recursive: true, force: true });
      changed = true;
    } else if (entry.startsWith(`${TRASH_PREFIX}${name}-`)) {
      if (present) await rm(entryPath, { recursive: true, force: true });
      else await rename(entryPath, path.join(parent, name));
      present = true;
      changed = true;
    }
  }
  if (changed) await fsyncDir(parent);
}
