/**
 * Claiming a run's output folder before anything in it is touched: its lock first (so cleaning up
 * crash leftovers cannot hit a live run's files), then the checkpoint store, and the rule that a
 * fresh run does not start in a folder that already holds another run's checkpoints.
 */
import { join } from 'node:path';
import { recoverFolder } from '../io/atomic-folder.js';
import { CheckpointStore } from './checkpoint-store.js';
import { CHECKPOINT_FILES } from './run-checkpoint.js';
import { acquireRunLock } from './run-lock.js';
import { TrainingError } from './training-error.js';

export const ADAPTER_DIR = 'adapter';

export interface RunFolder {
  store: CheckpointStore;
  /** Gives up the folder's lock. */
  release(): Promise<void>;
}

export async function claimRunFolder(output: string, options: { keepLast: number; resume: boolean }): Promise<RunFolder> {
  const lock = await acquireRunLock(output);
  try {
    const store = await CheckpointStore.open(join(output, 'checkpoints'), { keepLast: options.keepLast, requiredFiles: [...CHECKPOINT_FILES] });
    if (!options.resume && (await store.hasCheckpoints())) {
      // Starting over would interleave two runs' checkpoints, and retention would delete the old ones.
      throw new TrainingError(
        `output folder ${output} already has checkpoints (${store.dir}); use --resume (train(config, { resume: true })) to continue that run, or a new output folder`,
        'output_has_checkpoints',
      );
    }
    await recoverFolder(output, ADAPTER_DIR);
    return { store, release: () => lock.release() };
  } catch (error) {
    await lock.release();
    throw error;
  }
}
