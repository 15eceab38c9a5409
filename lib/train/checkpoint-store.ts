import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatKeyPath, problemsFromIssues } from '../config/zod-problems.js';
import { fsyncDir, fsyncFile, isErrno, tempName, TEMP_PREFIX, writeFileAtomic } from '../io/atomic-file.js';
import { libraryVersion } from '../config/library-version.js';
import {
  TRAINER_STATE_FILE,
  TRAINER_STATE_FORMAT,
  trainerStateInputSchema,
  trainerStateSchema,
  withCurrentFieldNames,
  type TrainerState,
  type TrainerStateInput,
} from './trainer-state.js';

/**
 * The checkpoint folder protocol (design.md, "Files on disk"):
 *
 *   checkpoints/
 *     step-000120/          adapter, optimizer state, trainer-state.json (with a size manifest)
 *     step-000240/
 *     latest                "step-000240\n"
 *
 * A checkpoint is written into `.tmp-step-NNNNNN-<random>/` in the same folder, every file is
 * fsynced, then the folder, then it is renamed into place and the parent fsynced. Only after that
 * is `latest` replaced (temp file + rename + fsync), and only after that are old checkpoints
 * removed. So `latest` names a complete folder, and a crash at any point leaves the previous
 * checkpoint as it was. (One exception, healed on the next open: saving a step that already exists
 * swaps the old folder out and the new one in, and a crash between those two renames leaves the
 * old folder under a `.trash-` name, which `open` renames back.)
 *
 * `latest` is a one-line file rather than a symlink: it is replaced by the same temp + rename as
 * everything else, works on Windows without privileges, survives copying or zipping a run folder
 * (where symlinks get dereferenced or dropped), and a reader can validate its content.
 *
 * `latest` is the commit point. A folder renamed into place whose `latest` update did not happen
 * is complete but not committed: while `latest` names a loadable checkpoint, that one is resumed
 * from, and the resumed run writes the uncommitted step again. Without a usable `latest` (deleted
 * by hand, damaged) the newest loadable folder is used.
 *
 * One writer per folder: opening a store cleans up what a crashed writer left, which would break a
 * writer that is still running. The trainer makes sure of it with the run folder's lock
 * (run-lock.ts), taken before the store is opened.
 */

export type { FolderFileWriter as CheckpointFileWriter } from '../io/atomic-folder.js';
import type { FolderFileWriter as CheckpointFileWriter } from '../io/atomic-folder.js';

export interface CheckpointStoreOptions {
  /** How many of the newest checkpoints to keep; the best one is kept in addition. */
  keepLast: number;
  /** Files every checkpoint must contain; a folder without them is skipped when loading. */
  requiredFiles?: readonly string[];
  /**
   * Inspect without touching anything: no folder is created, nothing a writer left is cleaned up
   * (it may still be writing), and `save` is refused. For tools that look at a live run.
   */
  readOnly?: boolean;
}

export interface Checkpoint {
  /** Folder name, e.g. "step-000120". */
  name: string;
  dir: string;
  step: number;
  state: TrainerState;
  /** Absolute path of each file the caller wrote, by name. */
  files: Readonly<Record<string, string>>;
}

export interface SkippedCheckpoint {
  name: string;
  reason: string;
}

export interface CheckpointListing {
  /** Loadable checkpoints, oldest step first. */
  checkpoints: Checkpoint[];
  skipped: SkippedCheckpoint[];
}

export interface LatestCheckpoint {
  /** The checkpoint to resume from, if any is loadable. */
  checkpoint: Checkpoint | undefined;
  /** Why other candidates, including what `latest` named, were passed over. */
  skipped: SkippedCheckpoint[];
}

export interface SavedCheckpoint extends Checkpoint {
  /** Folders removed by retention after this save. */
  removed: string[];
}

export const LATEST_FILE = 'latest';
const FOLDER_PATTERN = /^step-(\d{6,})$/;
const TRASH_PREFIX = '.trash-';
const DELETING_PREFIX = '.deleting-';
const FILE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function checkpointFolderName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** Thrown by `load` for a folder that is not a usable checkpoint. */
export class InvalidCheckpointError extends Error {
  override readonly name = 'InvalidCheckpointError';
  constructor(
    readonly checkpoint: string,
    readonly reason: string,
  ) {
    super(`checkpoint ${checkpoint}: ${reason}`);
  }
}

export class CheckpointStore {
  private constructor(
    /** The `checkpoints/` folder of a run. */
    readonly dir: string,
    private readonly options: CheckpointStoreOptions,
  ) {}

  /** Opens (creating it if needed) a checkpoints folder and clears up after a crashed writer. */
  static async open(dir: string, options: CheckpointStoreOptions): Promise<CheckpointStore> {
    if (!Number.isInteger(options.keepLast) || options.keepLast < 1) {
      throw new RangeError(`CheckpointStore: keepLast must be an integer >= 1, got ${options.keepLast}`);
    }
    for (const name of options.requiredFiles ?? []) assertFileName(name);
    const store = new CheckpointStore(path.resolve(dir), options);
    if (options.readOnly) return store;
    await mkdir(store.dir, { recursive: true });
    await store.recover();
    return store;
  }

  /** Writes a checkpoint for `state.step`, points `latest` at it and applies retention. */
  async save(stateInput: TrainerStateInput, writers: readonly CheckpointFileWriter[]): Promise<SavedCheckpoint> {
    if (this.options.readOnly) throw new Error(`checkpoint store ${this.dir} was opened read-only`);
    const input = trainerStateInputSchema.parse(stateInput);
    this.checkWriters(writers);
    const name = checkpointFolderName(input.step);
    const temp = path.join(this.dir, tempName(name));
    await mkdir(temp);
    let state: TrainerState;
    try {
      const sizes: Record<string, number> = {};
      for (const writer of writers) {
        const filePath = path.join(temp, writer.name);
        await writer.write(filePath);
        const info = await stat(filePath).catch(() => undefined);
        if (!info?.isFile()) throw new Error(`checkpoint writer for ${writer.name} did not create the file`);
        await fsyncFile(filePath);
        sizes[writer.name] = info.size;
      }
      state = trainerStateSchema.parse({
        ...input,
        format_version: TRAINER_STATE_FORMAT,
        created_at: new Date().toISOString(),
        library_version: libraryVersion(),
        files: sizes,
      });
      const statePath = path.join(temp, TRAINER_STATE_FILE);
      await writeFile(statePath, `${JSON.stringify(state, null, 2)}\n`, { flag: 'wx' });
      await fsyncFile(statePath);
      await fsyncDir(temp);
      await this.moveIntoPlace(temp, name);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw error;
    }
    await writeFileAtomic(path.join(this.dir, LATEST_FILE), `${name}\n`);
    const removed = await this.applyRetention(name);
    return { ...this.describe(name, state), removed };
  }

  /** Whether the folder holds any checkpoint, loadable or not, or a `latest` pointer. */
  async hasCheckpoints(): Promise<boolean> {
    if ((await this.folderNames()).length > 0) return true;
    return stat(path.join(this.dir, LATEST_FILE)).then(
      () => true,
      () => false,
    );
  }

  /** Every checkpoint folder, validated; the unusable ones with the reason. */
  async list(): Promise<CheckpointListing> {
    const checkpoints: Checkpoint[] = [];
    const skipped: SkippedCheckpoint[] = [];
    for (const name of await this.folderNames()) {
      try {
        checkpoints.push(await this.load(name));
      } catch (error) {
        if (!(error instanceof InvalidCheckpointError)) throw error;
        skipped.push({ name, reason: error.reason });
      }
    }
    checkpoints.sort((a, b) => a.step - b.step);
    return { checkpoints, skipped };
  }

  /**
   * The checkpoint to resume from: the one `latest` names, or when that is unusable the newest
   * loadable one before it (or the newest at all when `latest` is missing or unreadable).
   */
  async loadLatest(): Promise<LatestCheckpoint> {
    const { checkpoints, skipped } = await this.list();
    const pointer = await this.readLatestPointer();
    if (pointer.name === undefined) {
      if (pointer.problem) skipped.unshift({ name: LATEST_FILE, reason: pointer.problem });
      return { checkpoint: checkpoints.at(-1), skipped };
    }
    const named = checkpoints.find((checkpoint) => checkpoint.name === pointer.name);
    if (named) return { checkpoint: named, skipped };
    if (!skipped.some((entry) => entry.name === pointer.name)) {
      skipped.unshift({ name: pointer.name, reason: `named by ${LATEST_FILE} but missing` });
    }
    const pointerStep = stepOf(pointer.name) ?? Number.POSITIVE_INFINITY;
    const before = checkpoints.filter((checkpoint) => checkpoint.step < pointerStep);
    return { checkpoint: before.at(-1) ?? checkpoints.at(-1), skipped };
  }

  /** Loads and validates one checkpoint folder; throws InvalidCheckpointError with the reason. */
  async load(name: string): Promise<Checkpoint> {
    const folderStep = stepOf(name);
    if (folderStep === undefined) throw new InvalidCheckpointError(name, 'not a checkpoint folder name (step-NNNNNN)');
    const dir = path.join(this.dir, name);
    const state = await this.readState(name);
    if (state.step !== folderStep) {
      throw new InvalidCheckpointError(name, `${TRAINER_STATE_FILE} is for step ${state.step}`);
    }
    for (const required of this.options.requiredFiles ?? []) {
      if (!(required in state.files)) throw new InvalidCheckpointError(name, `has no ${required}`);
    }
    for (const [fileName, size] of Object.entries(state.files)) {
      const info = await stat(path.join(dir, fileName)).catch(() => undefined);
      if (!info?.isFile()) throw new InvalidCheckpointError(name, `${fileName} is missing`);
      if (info.size !== size) {
        throw new InvalidCheckpointError(name, `${fileName} is ${info.size} bytes, the manifest says ${size}`);
      }
    }
    return this.describe(name, state);
  }

  /** What `latest` names, or why it names nothing usable. */
  async readLatestPointer(): Promise<{ name?: string; problem?: string }> {
    let text: string;
    try {
      text = await readFile(path.join(this.dir, LATEST_FILE), 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return {};
      return { problem: `cannot read ${LATEST_FILE}: ${String(error)}` };
    }
    const name = text.trim();
    if (!FOLDER_PATTERN.test(name)) return { problem: `${LATEST_FILE} does not name a checkpoint: ${JSON.stringify(text.slice(0, 40))}` };
    return { name };
  }

  private async readState(name: string): Promise<TrainerState> {
    let text: string;
    try {
      text = await readFile(path.join(this.dir, name, TRAINER_STATE_FILE), 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) throw new InvalidCheckpointError(name, `${TRAINER_STATE_FILE} is missing`);
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new InvalidCheckpointError(name, `${TRAINER_STATE_FILE} is not valid JSON (${(error as Error).message})`);
    }
    json = withCurrentFieldNames(json);
    const result = trainerStateSchema.safeParse(json);
    if (!result.success) {
      const [first] = problemsFromIssues(result.error.issues, json);
      const detail = first ? `${formatKeyPath(first.path)}: ${first.message}` : 'invalid';
      throw new InvalidCheckpointError(name, `${TRAINER_STATE_FILE}: ${detail}`);
    }
    return result.data;
  }

  private describe(name: string, state: TrainerState): Checkpoint {
    const dir = path.join(this.dir, name);
    const files = Object.fromEntries(Object.keys(state.files).map((file) => [file, path.join(dir, file)]));
    return { name, dir, step: state.step, state, files };
  }

  private checkWriters(writers: readonly CheckpointFileWriter[]): void {
    const names = new Set<string>();
    for (const writer of writers) {
      assertFileName(writer.name);
      if (names.has(writer.name)) throw new Error(`checkpoint file ${writer.name} is given twice`);
      names.add(writer.name);
    }
    for (const required of this.options.requiredFiles ?? []) {
      if (!names.has(required)) throw new Error(`checkpoint file ${required} is required but has no writer`);
    }
  }

  /**
   * Renames the finished temp folder to its final name. Saving a step that already exists (a run
   * resumed and stopped again before its next step) swaps the old folder out first; if a crash
   * falls between the two renames, `recover` puts the old one back.
   */
  private async moveIntoPlace(temp: string, name: string): Promise<void> {
    const final = path.join(this.dir, name);
    const existing = await stat(final).catch(() => undefined);
    if (!existing) {
      await rename(temp, final);
      await fsyncDir(this.dir);
      return;
    }
    const trash = path.join(this.dir, `${TRASH_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
    await rename(final, trash);
    await rename(temp, final);
    await fsyncDir(this.dir);
    await rm(trash, { recursive: true, force: true });
  }

  /** Keeps the newest `keepLast` loadable checkpoints and the best one; removes everything else. */
  private async applyRetention(justSaved: string): Promise<string[]> {
    const { checkpoints, skipped } = await this.list();
    const keep = new Set([justSaved, ...checkpoints.slice(-this.options.keepLast).map((c) => c.name)]);
    const best = bestCheckpoint(checkpoints);
    if (best) keep.add(best.name);
    const doomed = [...checkpoints.map((c) => c.name), ...skipped.map((s) => s.name)].filter((name) => !keep.has(name));
    // Renamed out of the step-* namespace first, so a crash mid-delete never leaves a half-deleted
    // folder that looks like a checkpoint.
    for (const name of doomed) {
      const doomedPath = path.join(this.dir, `${DELETING_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
      await rename(path.join(this.dir, name), doomedPath);
      await rm(doomedPath, { recursive: true, force: true });
    }
    if (doomed.length > 0) await fsyncDir(this.dir);
    return doomed.sort();
  }

  /** Clears what a writer killed mid-save left behind. */
  private async recover(): Promise<void> {
    let changed = false;
    for (const entry of await readdir(this.dir)) {
      const entryPath = path.join(this.dir, entry);
      if (entry.startsWith(TEMP_PREFIX) || entry.startsWith(DELETING_PREFIX)) {
        await rm(entryPath, { recursive: true, force: true });
        changed = true;
      } else if (entry.startsWith(TRASH_PREFIX)) {
        const original = /^\.trash-(step-\d{6,})-[0-9a-f]+$/.exec(entry)?.[1];
        const originalExists = original !== undefined && (await stat(path.join(this.dir, original)).catch(() => undefined));
        if (original !== undefined && !originalExists) await rename(entryPath, path.join(this.dir, original));
        else await rm(entryPath, { recursive: true, force: true });
        changed = true;
      }
    }
    if (changed) await fsyncDir(this.dir);
  }

  private async folderNames(): Promise<string[]> {
    const entries = await readdir(this.dir, { withFileTypes: true }).catch((error: unknown) => {
      // A read-only look at a run that has not written a checkpoint yet.
      if (isErrno(error, 'ENOENT') && this.options.readOnly) return [];
      throw error;
    });
    return entries.filter((entry) => entry.isDirectory() && FOLDER_PATTERN.test(entry.name)).map((entry) => entry.name);
  }
}

/** Lowest validation loss among checkpoints evaluated at their own step; the earlier on a tie. */
export function bestCheckpoint(checkpoints: readonly Checkpoint[]): Checkpoint | undefined {
  let best: { checkpoint: Checkpoint; loss: number } | undefined;
  for (const checkpoint of [...checkpoints].sort((a, b) => a.step - b.step)) {
    const loss = checkpoint.state.eval_loss;
    if (loss !== null && (best === undefined || loss < best.loss)) best = { checkpoint, loss };
  }
  return best?.checkpoint;
}

function stepOf(name: string): number | undefined {
  const digits = FOLDER_PATTERN.exec(name)?.[1];
  return digits === undefined ? undefined : Number(digits);
}

function assertFileName(name: string): void {
  if (!FILE_NAME_PATTERN.test(name) || name === TRAINER_STATE_FILE) {
    throw new Error(`invalid checkpoint file name ${JSON.stringify(name)}: a plain file name other than ${TRAINER_STATE_FILE}`);
  }
}
