/**
 * An export writes several files (the GGUF, a Modelfile) that must appear together or not at
 * all. Each is written complete under a hidden name beside its target; only when every one is
 * written are they renamed into place. On failure the staged files are removed, so nothing is
 * left at the targets and a file already there stays as it was.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncDir } from '../io/atomic-file.js';

export const STAGED_MARK = '.export-';

export class StagedFiles {
  private readonly staged: Array<{ temp: string; target: string }> = [];

  /** A hidden path beside `target` to write it under until commit. */
  path(target: string): string {
    const abs = resolve(target);
    const temp = join(dirname(abs), `.${basename(abs)}${STAGED_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
    this.staged.push({ temp, target: abs });
    return temp;
  }

  /** Renames every staged file onto its target, in the order they were staged. */
  async commit(): Promise<void> {
    for (const { temp, target } of this.staged) await rename(temp, target);
    for (const dir of new Set(this.staged.map((s) => dirname(s.target)))) await fsyncDir(dir);
    this.staged.length = 0;
  }

  /** Removes what was staged and not committed. */
  async discard(): Promise<void> {
    await Promise.all(this.staged.map((s) => rm(s.temp, { force: true })));
    this.staged.length = 0;
  }
}
