/**
 * The training loop: QLoRA steps on the MLX thread, gradient accumulation weighted by supervised
 * tokens, the LR schedule, evaluation with early stopping, atomic checkpoints and exact resume.
 * Everything it reports is an event, on the run handle and in metrics.jsonl.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { trainConfigHash } from '../config/config-hash.js';
import { loadTrainConfig, parseTrainConfig } from '../config/load-config.js';
import type { TrainConfig, TrainConfigInput } from '../config/train-config.js';
import { EpochIterator, type DataCursor } from '../data/epoch-iterator.js';
import { memory, resetPeakMemory } from '../device.js';
import type { RecordSource } from '../data/prepared-dataset.js';
import { datasetLoss, type DatasetLoss } from './dataset-loss.js';
import type { LoadedModel } from '../model/load-model.js';
import { adapterConfigFor } from '../model/adapter-config.js';
import { writeFolderAtomically } from '../io/atomic-folder.js';
import type { CheckpointStore } from './checkpoint-store.js';
import { MetricsLog } from './metrics-log.js';
import { adapterWriters, checkpointWriters, restoreCheckpoint } from './run-checkpoint.js';
import { createRunEventChannel, type CheckpointEvent, type DoneEvent, type EventChannel, type RunEvent } from './run-events.js';
import { ADAPTER_DIR, claimRunFolder } from './run-folder.js';
import { applyInitAdapter } from './init-adapter.js';
import { learningRateAt, totalTrainingSteps } from './schedule.js';
import { libraryVersion } from '../config/library-version.js';
import { applyMemoryLimits, checkResumable, checkVocabulary, loadRunModel, overlongReport } from './run-setup.js';
import { openTrainingData, toNativeBatch, type TrainingData } from './training-data.js';
import { TrainingError, withMemoryHint, type MemoryContext } from './training-error.js';
import { classifyUpdate } from './update-outcome.js';
import { ValidationTracker, type ValidationRecord } from './validation-tracker.js';

export interface TrainOptions {
  /** Stops after the current step, writes a checkpoint, and ends with reason "aborted". */
  signal?: AbortSignal;
  /**
   * Continue from the run folder's latest checkpoint (a fresh start if there is none). Without it,
   * an output folder that already has checkpoints is refused.
   */
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

  /** Loss over a split with the run's batch shape; Ctrl+C stops it within one batch. */
  private loss(source: RecordSource, maxBatches?: number): Promise<DatasetLoss> {
    const { config: c, data } = this;
    return datasetLoss(this.model!.native, source, {
      batchSize: c.training.batch_size,
      maxSeqLength: c.data.max_seq_length,
      padId: data!.padId,
      ...(maxBatches !== undefined ? { maxBatches } : {}),
      ...(this.options.signal ? { signal: this.options.signal } : {}),
    });
  }

  /** The test split's loss, once, after training; null without a test split or when cut short. */
  private async testLoss(context: MemoryContext): Promise<DoneEvent['test']> {
    const test = this.data?.test;
    if (!test || test.size === 0) return null;
    const r = await withMemoryHint(() => this.loss(test), context);
    if (r.aborted) return null;
    return { loss: Number.isFinite(r.loss) ? r.loss : null, perplexity: r.perplexity, tokens: r.tokens, records: test.size };
  }

  async run(): Promise<DoneEvent> {
    const c = this.config;
    const output = resolve(c.output);
    await mkdir(output, { recursive: true });
    let step = 0;
    let release: (() => Promise<void>) | undefined;
    // MLX's limits are process-wide: put back what the host process had once the run ends.
    const restoreLimits: Array<() => Promise<unknown>> = [];
    try {
      // Before anything else touches the folder (the metrics log included): it may be another run's.
      const folder = await claimRunFolder(output, { keepLast: c.checkpoint.keep_last, resume: this.options.resume ?? false });
      release = folder.release;
      this.store = folder.store;
      this.log = await MetricsLog.open(output);
      restoreLimits.push(...(await applyMemoryLimits(c.memory)));
      this.data = await openTrainingData({ ...c, output });
      const model = (this.model = await loadRunModel(c));
      checkVocabulary(this.data, model);
      const adapterConfig = adapterConfigFor(c, { num_hidden_layers: model.architecture.numLayers, architecture: model.architecture.family, qk_row_order: model.architecture.ropeTraditional ? 'gguf' : 'hf' });
      const configHash = trainConfigHash(c);

      const resumed = this.options.resume ? (await this.store.loadLatest()).checkpoint : undefined;
      checkResumable(resumed, configHash);
      if (resumed) {
        await restoreCheckpoint(model.native, resumed.files);
        step = resumed.state.step;
      } else await applyInitAdapter(model, c);
      const tracker = new ValidationTracker(resumed?.state.best ?? null, resumed?.state.evals_since_best ?? 0);
      let nonfinite = resumed?.state.nonfinite_count ?? 0;

      const t = c.training;
      const batches = new EpochIterator(this.data.train, {
        mode: c.data.packing ? 'pack' : 'bucket',
        batchSize: t.batch_size,
        maxSeqLength: c.data.max_seq_length,
        seed: t.seed,
        padId: this.data.padId,
        ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
        ...(resumed ? { cursor: resumed.state.data_cursor as DataCursor } : {}),
      });
      // Every epoch's own count: with packing they differ, and a run resumed in any epoch must
      // arrive at the same total, or its learning rates (and so its losses) would differ.
      const totalSteps = totalTrainingSteps(t, (epoch) => batches.batchesInEpoch(epoch));
      checkResumable(resumed, configHash, totalSteps);
      const schedule = { learning_rate: t.learning_rate, min_lr: t.min_lr, warmup_steps: t.warmup_steps, schedule: t.schedule, total_steps: totalSteps };
      this.emit({ type: 'start', time: now(), step, total_steps: totalSteps, resumed_from: resumed?.dir ?? null, config_hash: configHash, library_version: libraryVersion(), overlong: overlongReport(c, this.data) });
      const memoryContext = (phase: string, batch?: { rows: number; width: number }): MemoryContext => ({
        step,
        phase,
        ...(batch ? { batch } : {}),
        settings: { batchSize: t.batch_size, maxSeqLength: c.data.max_seq_length, gradCheckpointing: t.grad_checkpointing, rank: c.lora.rank },
      });

      let lr = learningRateAt(Math.min(step, totalSteps - 1), schedule);
      let epoch = batches.cursor.epoch;
      let lastEval: (ValidationRecord & { step: number }) | undefined = resumed ? { step, loss: resumed.state.eval_loss, isBest: false } : undefined;
      let evaluatedAt = resumed && resumed.state.eval_loss !== null ? step : -1;
      let lastCheckpointStep = resumed ? step : -1;

      let evaluationCut = false;
      const evaluate = async (): Promise<ValidationRecord | undefined> => {
        const valid = this.data?.valid;
        if (!valid || valid.size === 0) return void (evaluatedAt = step);
        const r = await withMemoryHint(() => this.loss(valid, c.eval.max_batches), memoryContext('evaluation'));
        // A pass cut short by Ctrl+C measured only part of the set: it is no evaluation.
        if (r.aborted) return void (evaluationCut = true);
        evaluatedAt = step;
        const record = tracker.record(step, r.loss);
        const best = tracker.best;
        this.emit({
          type: 'eval',
          time: now(),
          step,
          val_loss: record.loss,
          val_loss_nonfinite: record.loss === null,
          perplexity: record.loss === null ? null : r.perplexity,
          is_best: record.isBest,
          best_val_loss: best?.metric ?? null,
          best_step: best?.step ?? null,
          evals_since_best: tracker.evalsSinceBest,
        });
        lastEval = { step, ...record };
        return record;
      };
      const checkpoint = async (reason: CheckpointEvent['reason']): Promise<void> => {
        const saved = await this.store!.save(
          {
            step,
            epoch,
            data_cursor: batches.cursor,
            rng_state: { seed: t.seed, scheme: 'sha256(seed:step:micro)' },
            schedule: { total_steps: totalSteps, learning_rate: lr },
            best: tracker.best,
            // Retention keeps the checkpoint with the lowest of these: the best one.
            eval_loss: lastEval?.step === step ? lastEval.loss : null,
            evals_since_best: tracker.evalsSinceBest,
            nonfinite_count: nonfinite,
            config_hash: configHash,
          },
          checkpointWriters(model.native, adapterConfig),
        );
        lastCheckpointStep = step;
        this.emit({ type: 'checkpoint', time: now(), step, path: saved.dir, reason });
      };

      await resetPeakMemory();
      let reason: DoneEvent['reason'] = 'completed';
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
          // An accumulation group never spans two epochs (the step count assumes it): a group
          // that reaches its epoch's last batch is an update of its own, even if short. The cursor
          // stays at the end of that epoch, and the iterator moves on when asked for more.
          if (groupEpoch !== undefined && batches.atEpochEnd) break;
          const batch = batches.next();
          if (!batch) break;
          groupEpoch ??= batch.epoch;
          epoch = batch.epoch;
          realTokens += batch.realTokens;
          const nativeBatch = toNativeBatch(batch);
          const options = { dropoutSeed: dropoutSeed(t.seed, step, micro), checkpoint: t.grad_checkpointing };
          await withMemoryHint(() => timed(model.native.accumulateGradients(nativeBatch, options)), memoryContext('forward/backward', batch));
        }
        if (micro === 0) break; // the data ran out (epochs done)
        const update = await withMemoryHint(
          () => timed(model.native.applyOptimizer({ learningRate: lr, weightDecay: t.weight_decay, maxGradNorm: t.max_grad_norm })),
          memoryContext('optimizer update'),
        );
        const outcome = classifyUpdate(update);
        if (outcome.kind === 'nonfinite') {
          nonfinite++;
          this.emit({ type: 'nonfinite', time: now(), step, loss: outcome.loss, grad_norm: outcome.gradNorm, count: nonfinite });
          if (nonfinite > t.max_nonfinite_steps) {
            throw new TrainingError(`${nonfinite} updates had a NaN/Inf loss or gradient (training.max_nonfinite_steps is ${t.max_nonfinite_steps}); lower training.learning_rate or check the data`, 'nonfinite_limit');
          }
        } else if (outcome.kind === 'empty') {
          this.emit({ type: 'skip', time: now(), step, reason: 'no_supervised_tokens', tokens: realTokens });
        }
        step++;
        const seconds = (performance.now() - stepStart) / 1000;
        rate = rate === undefined ? seconds : 0.8 * rate + 0.2 * seconds;
        if (outcome.kind === 'applied') {
          const mem = await memory();
          this.emit({
            type: 'step',
            time: now(),
            step,
            epoch,
            loss: outcome.loss,
            lr,
            grad_norm: outcome.gradNorm,
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
        const isLast = step >= totalSteps;
        const evaluated = isLast || (c.eval.every_steps > 0 && step % c.eval.every_steps === 0) ? await evaluate() : undefined;
        // A new best is written even off the checkpoint interval: the best checkpoint must exist.
        const due = isLast ? 'final' : c.checkpoint.every_steps > 0 && step % c.checkpoint.every_steps === 0 ? 'interval' : evaluated?.isBest ? 'best' : undefined;
        if (due) await checkpoint(due);
        if (!isLast && evaluated && c.eval.early_stopping_patience > 0 && tracker.evalsSinceBest >= c.eval.early_stopping_patience) {
          reason = 'early_stopping';
          break;
        }
      }
      if (evaluationCut) reason = 'aborted';
      if (reason === 'aborted') {
        if (lastCheckpointStep !== step) await checkpoint('abort');
      } else {
        const evaluated = evaluatedAt === step ? undefined : await evaluate();
        // A checkpoint already at this step is written again when its evaluation came after it.
        if (lastCheckpointStep !== step || evaluated?.isBest) await checkpoint('final');
      }
      const adapterDir = await writeFolderAtomically(output, ADAPTER_DIR, adapterWriters(model.native, adapterConfig));
      const test = reason === 'aborted' ? null : await this.testLoss(memoryContext('test evaluation'));
      const best = tracker.best;
      const done: DoneEvent = {
        type: 'done',
        time: now(),
        step,
        reason,
        best: best ? { step: best.step, val_loss: best.metric } : null,
        adapter_path: adapterDir,
        test,
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
      await this.log?.close();
      for (const restore of restoreLimits.reverse()) await restore();
      await release?.();
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
