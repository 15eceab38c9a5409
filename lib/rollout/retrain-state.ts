/**
 * The retrain job's memory across crashes: retrain-state.json in the work folder (replaced
 * atomically after every stage) holds which stages finished and what each wrote, and
 * retrain-stages.jsonl logs every stage start and finish. A rerun skips a finished stage once its
 * outputs are verified to exist, and runs the first unfinished one again from its start.
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../io/atomic-file.js';

export const RETRAIN_STAGES = ['prepare', 'train', 'eval', 'export', 'register', 'record'] as const;
export type RetrainStage = (typeof RETRAIN_STAGES)[number];
export const STATE_FILE = 'retrain-state.json';
export const STAGE_LOG_FILE = 'retrain-stages.jsonl';

const stageRecordSchema = z.object({ finished: z.string(), outputs: z.record(z.string(), z.unknown()) });

export const retrainStateSchema = z.object({
  format: z.literal(1),
  config_hash: z.string(),
  /** The version this run creates and the one it continues from, fixed when the run starts. */
  version: z.string(),
  parent: z.string(),
  started: z.string(),
  stages: z.partialRecord(z.enum(RETRAIN_STAGES), stageRecordSchema),
});
export type RetrainState = z.output<typeof retrainStateSchema>;
export type StageOutputs = Record<string, unknown>;

export async function readRetrainState(work: string): Promise<RetrainState | undefined> {
  const file = join(work, STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const parsed = retrainStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file}: not a retrain state file (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`);
  return parsed.data;
}

export interface StageRunner {
  readonly state: RetrainState;
  /**
   * Runs `stage` unless it finished before (then `verify` checks its outputs still exist, and they
   * are returned as recorded).
   */
  run(stage: RetrainStage, work: () => Promise<StageOutputs>, verify: (outputs: StageOutputs) => Promise<void>): Promise<StageOutputs>;
}

export async function openStageRunner(work: string, state: RetrainState, onStage?: (stage: RetrainStage, event: 'start' | 'skip' | 'finish') => void): Promise<StageRunner> {
  await mkdir(work, { recursive: true });
  const log = (stage: RetrainStage, event: string) => appendFile(join(work, STAGE_LOG_FILE), `${JSON.stringify({ stage, event, time: new Date().toISOString(), pid: process.pid })}\n`);
  const save = () => writeFileAtomic(join(work, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  await save();
  return {
    state,
    async run(stage, doWork, verify) {
      const done = state.stages[stage];
      if (done) {
        await verify(done.outputs).catch((error: Error) => {
          throw new Error(`${join(work, STATE_FILE)}: stage ${stage} finished at ${done.finished}, but ${error.message}; it is not run twice: restore it or start in a new work folder`);
        });
        onStage?.(stage, 'skip');
        return done.outputs;
      }
      await log(stage, 'start');
      onStage?.(stage, 'start');
      const outputs = await doWork();
      state.stages[stage] = { finished: new Date().toISOString(), outputs };
      await save();
      await log(stage, 'finish');
      onStage?.(stage, 'finish');
      return outputs;
    },
  };
}
