/**
 * The training loop: QLoRA steps on the MLX thread, gradient accumulation weighted by supervised
 * tokens, the LR schedule, evaluation with early stopping, atomic checkpoints and exact resume.
 * Everything it reports is an event, on the run handle and in metrics.jsonl.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { trainConfigHash } from '../config/config-hash.js';
import { loadTrainConfig, parseTrainConfig } from '../config/load-config.js';
import type { TrainConfig, TrainConfigInput } from '../config/train-config.js';
import { EpochIterator, type DataCursor } from '../data/epoch-iterator.js';
import { memory, resetPeakMemory, setCacheLimit, setMemoryLimit } from '../device.js';
import { datasetLoss } from '../eval/dataset-loss.js';
import { loadModel, type LoadedModel } from '../model/load-model.js';
import { adapterConfigFor } from './adapter-config.js';
import { CheckpointStore, type CheckpointFileWriter } from './checkpoint-store.js';
import { fsyncDir, fsyncFile, tempName } from './durable-fs.js';
import { MetricsLog } from './metrics-log.js';
import { adapterWriters, checkpointWriters, CHECKPOINT_FILES, restoreCheckpoint } from './run-checkpoint.js';
import { createRunEventChannel, type DoneEvent, type EventChannel, type RunEvent } from './run-events.js';
import { learningRateAt, totalTrainingSteps } from './schedule.js';
import { libraryVersion } from './trainer-state.js';
import { openTrainingData, toNativeBatch, type TrainingData } from './training-data.js';
import { outOfMemoryHint, TrainingError } from './training-error.js';

export interface TrainOptions {
  /** Stops after the current step, writes a checkpoint, and ends with reason "aborted". */
  signal?: AbortSignal;
  /** Continue from the run folder's latest checkpoint (a fresh start if there is none). */
  resume?: boolean;
}

export interface RunHandle extends AsyncIterable<RunEvent> {
  /** Settles when the run ends: the done event, or the error that stopped it. */
  readonly done: Promise<DoneEvent>;
}

/** The dropout key of one micro-batch: a function of the seed and position only, so resume replays it. */
function dropoutSeed(seed: number, step: number, micro: number): number {
  const h = createHash('sha256').update(`${seed}:${step}:${micro}`).digest();
  return h.readUInt32LE(0) & 0x7fffffff;
}

/** Each file written beside its final name, synced, then renamed over it. */
async function writeFilesAtomically(dir: string, writers: readonly CheckpointFileWriter[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const w of writers) {
    const tmp = join(dir, tempName(w.name));
    try {
      await w.write(tmp);
      await fsyncFile(tmp);
      await rename(tmp, join(dir, w.name));
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }
  await fsyncDir(dir);
}

function now(): string {
  return new Date().toISOString();
}

class Run {
  private readonly started = performance.now();
  private model: LoadedModel | undefined;
  private data: TrainingData | undefined;
  private log: MetricsLog | undefined;
  private store: CheckpointStore | undefined;

  constructor(
    private readonly config: TrainConfig,
    private readonly options: TrainOptions,
    private readonly channel: EventChannel<RunEvent>,
  ) {}

  private emit(event: RunEvent): void {
    this.channel.push(event);
    this.log?.append(event);
  }

  async run(): Promise<DoneEvent> {
    const c = this.config;
    const output = resolve(c.output);
    await mkdir(output, { recursive: true });
    this.log = await MetricsLog.open(output);
    let step = 0;
    try {
      if (c.memory.limit !== undefined) await setMemoryLimit(c.memory.limit);
      if (c.memory.cache_limit !== undefined) await setCacheLimit(c.memory.cache_limit);
      this.data = await openTrainingData({ ...c, output });
      const model = await loadModel(c.model, {
        quantization: c.quantization === 'none' ? 'none' : { bits: c.quantization.bits, groupSize: c.quantization.group_size },
        ...(c.training.compute_dtype !== 'auto' ? { computeDtype: c.training.compute_dtype } : {}),
        lora: { ...c.lora, layers: c.lora.layers === 'all' ? undefined : c.lora.layers, seed: c.training.seed },
      });
      this.model = model;
      const adapterConfig = adapterConfigFor(c, { num_hidden_layers: model.architecture.numLayers, architecture: model.architecture.family });
      this.store = await CheckpointStore.open(join(output, 'checkpoints'), { keepLast: c.checkpoint.keep_last, requiredFiles: [...CHECKPOINT_FILES] });
      const configHash = trainConfigHash(c);

      let cursor: DataCursor | undefined;
      let best: { metric: number; step: number } | null = null;
      let evalsSinceBest = 0;
      let nonfinite = 0;
      let resumedFrom: string | null = null;
      if (this.options.resume) {
        const { checkpoint } = await this.store.loadLatest();
        if (checkpoint) {
          if (checkpoint.state.config_hash !== configHash) {
            throw new TrainingError(
              `cannot resume from ${checkpoint.dir}: the config changed since it was written (hash ${checkpoint.state.config_hash.slice(0, 12)} ≠ ${configHash.slice(0, 12)}); resuming would not reproduce the run`,
              'config_changed',
            );
          }
          await restoreCheckpoint(model.native, checkpoint.files);
          step = checkpoint.state.step;
          cursor = checkpoint.state.data_cursor as DataCursor;
          best = checkpoint.state.best;
          evalsSinceBest = checkpoint.state.evals_since_best;
          nonfinite = checkpoint.state.nonfinite_count;
          resumedFrom = checkpoint.dir;
        }
      }

      const t = c.training;
      const batches = new EpochIterator(this.data.train, {
        mode: c.data.packing ? 'pack' : 'bucket',
        batchSize: t.batch_size,
        maxSeqLength: c.data.max_seq_length,
        seed: t.seed,
        padId: this.data.padId,
        ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
        ...(cursor ? { cursor } : {}),
      });
      const perEpoch = batches.batchesPerEpoch;
      const totalSteps = totalTrainingSteps(t, perEpoch);
      const schedule = { learning_rate: t.learning_rate, min_lr: t.min_lr, warmup_steps: t.warmup_steps, schedule: t.schedule, total_steps: totalSteps };
      this.emit({ type: 'start', time: now(), step, total_steps: totalSteps, resumed_from: resumedFrom, config_hash: configHash, library_version: libraryVersion() });

      const evaluate = async (): Promise<number | undefined> => {
        if (!this.data?.valid || this.data.valid.size === 0) return undefined;
        const r = await datasetLoss(model.native, this.data.valid, {
          batchSize: t.batch_size,
          maxSeqLength: c.data.max_seq_length,
          padId: this.data.padId,
          ...(c.eval.max_batches !== undefined ? { maxBatches: c.eval.max_batches } : {}),
        });
        const isBest = best === null || r.loss < best.metric;
        if (isBest) {
          best = { metric: r.loss, step };
          evalsSinceBest = 0;
        } else {
          evalsSinceBest++;
        }
        this.emit({ type: 'eval', time: now(), step, val_loss: r.loss, perplexity: r.perplexity, is_best: isBest, best_val_loss: best!.metric, best_step: best!.step, evals_since_best: evalsSinceBest });
        return r.loss;
      };
      const checkpoint = async (reason: 'interval' | 'abort' | 'final', evalLoss: number | undefined, lr: number, epoch: number) => {
        const saved = await this.store!.save(
          {
            step,
            epoch,
            data_cursor: batches.cursor,
            rng_state: { seed: t.seed, scheme: 'sha256(seed:step:micro)' },
            schedule: { total_steps: totalSteps, learning_rate: lr },
            best,
            eval_loss: evalLoss ?? null,
            evals_since_best: evalsSinceBest,
            nonfinite_count: nonfinite,
            config_hash: configHash,
          },
          checkpointWriters(model.native, adapterConfig),
        );
        this.emit({ type: 'checkpoint', time: now(), step, path: saved.dir, reason });
      };

      await resetPeakMemory();
      let reason: DoneEvent['reason'] = 'completed';
      let lr = learningRateAt(Math.min(step, totalSteps - 1), schedule);
      let epoch = batches.cursor.epoch;
      let lastEvalStep = -1;
      let lastCheckpointStep = resumedFrom ? step : -1;
      let rate: number | undefined;
      while (step < totalSteps) {
        if (this.options.signal?.aborted) {
          reason = 'aborted';
          break;
        }
        lr = learningRateAt(step, schedule);
        const stepStart = performance.now();
        let realTokens = 0;
        let nativeSeconds = 0;
        const timed = async <T>(work: Promise<T>): Promise<T> => {
          const t0 = performance.now();
          try {
            return await work;
          } finally {
            nativeSeconds += (performance.now() - t0) / 1000;
          }
        };
        let groupEpoch: number | undefined;
        let micro = 0;
        for (; micro < t.grad_accumulation; micro++) {
          // An accumulation group never spans two epochs: the cursor after a short group is the
          // start of the next epoch, where a resumed run continues too.
          if (groupEpoch !== undefined && batches.cursor.batch === 0) break;
          const batch = batches.next();
          if (!batch) break;
          groupEpoch ??= batch.epoch;
          epoch = batch.epoch;
          realTokens += batch.realTokens;
          try {
            const nativeBatch = toNativeBatch(batch);
            await timed(
              model.native.accumulateGradients(nativeBatch, {
                dropoutSeed: dropoutSeed(t.seed, step, micro),
                checkpoint: t.grad_checkpointing,
              }),
            );
          } catch (error) {
            throw outOfMemoryHint(error, batch.rows, batch.width, step);
          }
        }
        if (micro === 0) break; // the data ran out (epochs done)
        const update = await timed(model.native.applyOptimizer({ learningRate: lr, weightDecay: t.weight_decay, maxGradNorm: t.max_grad_norm }));
        const loss = update.tokens > 0 ? update.lossSum / update.tokens : Number.NaN;
        if (!Number.isFinite(update.lossSum) || !Number.isFinite(update.gradNorm)) {
          nonfinite++;
          this.emit({ type: 'nonfinite', time: now(), step, loss: Number.isFinite(loss) ? loss : null, grad_norm: Number.isFinite(update.gradNorm) ? update.gradNorm : null, count: nonfinite });
          if (nonfinite > t.max_nonfinite_steps) {
            throw new TrainingError(`${nonfinite} updates had a NaN/Inf loss or gradient (training.max_nonfinite_steps is ${t.max_nonfinite_steps}); lower training.learning_rate or check the data`, 'nonfinite_limit');
          }
        }
        step++;
        const seconds = (performance.now() - stepStart) / 1000;
        rate = rate === undefined ? seconds : 0.8 * rate + 0.2 * seconds;
        const mem = await memory();
        if (Number.isFinite(loss) && Number.isFinite(update.gradNorm)) {
          this.emit({
            type: 'step',
            time: now(),
            step,
            epoch,
            loss,
            lr,
            grad_norm: update.gradNorm,
            tokens: realTokens,
            supervised_tokens: Math.round(update.tokens),
            tokens_per_sec: realTokens / seconds,
            supervised_tokens_per_sec: update.tokens / seconds,
            peak_memory_bytes: mem.peak,
            active_memory_bytes: mem.active,
            eta_seconds: rate * (totalSteps - step),
            step_seconds: seconds,
            native_seconds: nativeSeconds,
          });
        }
        let evalLoss: number | undefined;
        if (c.eval.every_steps > 0 && step % c.eval.every_steps === 0) {
          evalLoss = await evaluate();
          lastEvalStep = step;
        }
        if (c.checkpoint.every_steps > 0 && step % c.checkpoint.every_steps === 0) {
          await checkpoint('interval', evalLoss, lr, epoch);
          lastCheckpointStep = step;
        }
        if (evalLoss !== undefined && c.eval.early_stopping_patience > 0 && evalsSinceBest >= c.eval.early_stopping_patience) {
          reason = 'early_stopping';
          break;
        }
      }
      if (reason === 'aborted') {
        if (lastCheckpointStep !== step) await checkpoint('abort', undefined, lr, epoch);
      } else {
        const evalLoss = lastEvalStep === step ? undefined : await evaluate();
        if (lastCheckpointStep !== step) await checkpoint('final', evalLoss, lr, epoch);
      }
      const adapterDir = join(output, 'adapter');
      await writeFilesAtomically(adapterDir, adapterWriters(model.native, adapterConfig));
      const finalBest = best as { metric: number; step: number } | null;
      const done: DoneEvent = {
        type: 'done',
        time: now(),
        step,
        reason,
        best: finalBest ? { step: finalBest.step, val_loss: finalBest.metric } : null,
        adapter_path: adapterDir,
        elapsed_seconds: (performance.now() - this.started) / 1000,
      };
      this.emit(done);
      return done;
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      this.emit({ type: 'error', time: now(), step, message: e.message, ...(e instanceof TrainingError && e.code ? { code: e.code } : {}) });
      throw e;
    } finally {
      this.model?.dispose();
      this.data?.close();
      await this.log.close();
    }
  }
}

/**
 * Starts a training run. `config` is a config object (validated here), or the path of a YAML or
 * JSON config file. Iterate the handle for events; await `done` for the outcome.
 */
export function train(config: TrainConfigInput | TrainConfig | string, options: TrainOptions = {}): RunHandle {
  const channel = createRunEventChannel();
  const done = (async () => {
    const parsed = typeof config === 'string' ? await loadTrainConfig(config) : parseTrainConfig(config);
    return new Run(parsed, options, channel).run();
  })();
  done.then(
    () => channel.close(),
    (error: unknown) => channel.fail(error),
  );
  return {
    done,
    [Symbol.asyncIterator]: () => channel[Symbol.asyncIterator](),
  };
}
