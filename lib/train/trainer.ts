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
import { adapterConfigFor, type AdapterConfig } from '../model/adapter-config.js';
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

/** What the loop changes as it goes, in one place, so each stage says what it reads and writes. */
interface Progress {
  step: number;
  epoch: number;
  lr: number;
  nonfinite: number;
  lastEval: (ValidationRecord & { step: number }) | undefined;
  /** Step of the latest evaluation (-1: none yet). */
  evaluatedAt: number;
  lastCheckpointStep: number;
  /** A validation pass was cut short by Ctrl+C. */
  evaluationCut: boolean;
  /** Smoothed seconds per step, for the ETA. */
  rate: number | undefined;
}

/** What a run works with once it is set up. */
interface Session {
  model: LoadedModel;
  adapterConfig: AdapterConfig;
  configHash: string;
  batches: EpochIterator;
  totalSteps: number;
  schedule: Parameters<typeof learningRateAt>[1];
  tracker: ValidationTracker;
  progress: Progress;
}

interface AccumulatedGroup {
  micro: number;
  realTokens: number;
  nativeSeconds: number;
}

/** Awaits native work, adding its wall time to the group's native seconds. */
async function timed<T>(group: AccumulatedGroup, work: Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await work;
  } finally {
    group.nativeSeconds += (performance.now() - t0) / 1000;
  }
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

  /** The run: claim the folder, open the session, step until done, finish; every failure is an error event. */
  async run(): Promise<DoneEvent> {
    const output = resolve(this.config.output);
    await mkdir(output, { recursive: true });
    let progress: Progress | undefined;
    let release: (() => Promise<void>) | undefined;
    // MLX's limits are process-wide: put back what the host process had once the run ends.
    const restoreLimits: Array<() => Promise<unknown>> = [];
    try {
      // Before anything else touches the folder (the metrics log included): it may be another run's.
      const folder = await claimRunFolder(output, { keepLast: this.config.checkpoint.keep_last, resume: this.options.resume ?? false });
      release = folder.release;
      this.store = folder.store;
      this.log = await MetricsLog.open(output);
      restoreLimits.push(...(await applyMemoryLimits(this.config.memory)));
      const session = await this.openSession(output);
      progress = session.progress;
      const reason = await this.stepUntilDone(session);
      return await this.finish(session, reason, output);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      this.emit({ type: 'error', time: now(), step: progress?.step ?? 0, message: e.message, ...(e instanceof TrainingError && e.code ? { code: e.code } : {}) });
      throw e;
    } finally {
      this.model?.dispose();
      this.data?.close();
      await this.log?.close();
      for (const restore of restoreLimits.reverse()) await restore();
      await release?.();
    }
  }

  /** Data, model and adapter config, the checkpoint to resume from, the schedule; emits the start event. */
  private async openSession(output: string): Promise<Session> {
    const c = this.config;
    const t = c.training;
    const data = (this.data = await openTrainingData({ ...c, output }));
    const model = (this.model = await loadRunModel(c));
    checkVocabulary(data, model);
    const adapterConfig = adapterConfigFor(c, { num_hidden_layers: model.architecture.numLayers, architecture: model.architecture.family, qk_row_order: model.architecture.ropeTraditional ? 'gguf' : 'hf' });
    const configHash = trainConfigHash(c);
    const resumed = this.options.resume ? (await this.store!.loadLatest()).checkpoint : undefined;
    checkResumable(resumed, configHash);
    if (resumed) await restoreCheckpoint(model.native, resumed.files);
    else await applyInitAdapter(model, c);
    const batches = new EpochIterator(data.train, {
      mode: c.data.packing ? 'pack' : 'bucket',
      batchSize: t.batch_size,
      maxSeqLength: c.data.max_seq_length,
      seed: t.seed,
      padId: data.padId,
      ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
      ...(resumed ? { cursor: resumed.state.data_cursor as DataCursor } : {}),
    });
    // Every epoch's own count: with packing they differ, and a run resumed in any epoch must
    // arrive at the same total, or its learning rates (and so its losses) would differ.
    const totalSteps = totalTrainingSteps(t, (epoch) => batches.batchesInEpoch(epoch));
    checkResumable(resumed, configHash, totalSteps);
    const schedule = { learning_rate: t.learning_rate, min_lr: t.min_lr, warmup_steps: t.warmup_steps, schedule: t.schedule, total_steps: totalSteps };
    const step = resumed?.state.step ?? 0;
    const progress: Progress = {
      step,
      epoch: batches.cursor.epoch,
      lr: learningRateAt(Math.min(step, totalSteps - 1), schedule),
      nonfinite: resumed?.state.nonfinite_count ?? 0,
      lastEval: resumed ? { step, loss: resumed.state.eval_loss, isBest: false } : undefined,
      evaluatedAt: resumed && resumed.state.eval_loss !== null ? step : -1,
      lastCheckpointStep: resumed ? step : -1,
      evaluationCut: false,
      rate: undefined,
    };
    const tracker = new ValidationTracker(resumed?.state.best ?? null, resumed?.state.evals_since_best ?? 0);
    this.emit({ type: 'start', time: now(), step, total_steps: totalSteps, resumed_from: resumed?.dir ?? null, config_hash: configHash, library_version: libraryVersion(), overlong: overlongReport(c, data) });
    return { model, adapterConfig, configHash, batches, totalSteps, schedule, tracker, progress };
  }

  private memoryContext(p: Progress, phase: string, batch?: { rows: number; width: number }): MemoryContext {
    const c = this.config;
    return {
      step: p.step,
      phase,
      ...(batch ? { batch } : {}),
      settings: { batchSize: c.training.batch_size, maxSeqLength: c.data.max_seq_length, gradCheckpointing: c.training.grad_checkpointing, rank: c.lora.rank },
    };
  }

  /** Optimizer updates until the schedule ends, the data runs out, early stopping or Ctrl+C. */
  private async stepUntilDone(s: Session): Promise<DoneEvent['reason']> {
    const c = this.config;
    const p = s.progress;
    await resetPeakMemory();
    while (p.step < s.totalSteps) {
      if (this.options.signal?.aborted) return 'aborted';
      p.lr = learningRateAt(p.step, s.schedule);
      const stepStart = performance.now();
      const group = await this.accumulateGroup(s);
      if (group.micro === 0) break; // the data ran out (epochs done)
      await this.applyUpdate(s, group, stepStart);
      const isLast = p.step >= s.totalSteps;
      const evaluated = isLast || (c.eval.every_steps > 0 && p.step % c.eval.every_steps === 0) ? await this.evaluate(s) : undefined;
      // A new best is written even off the checkpoint interval: the best checkpoint must exist.
      const due = isLast ? 'final' : c.checkpoint.every_steps > 0 && p.step % c.checkpoint.every_steps === 0 ? 'interval' : evaluated?.isBest ? 'best' : undefined;
      if (due) await this.checkpoint(s, due);
      if (!isLast && evaluated && c.eval.early_stopping_patience > 0 && s.tracker.evalsSinceBest >= c.eval.early_stopping_patience) return 'early_stopping';
    }
    return 'completed';
  }

  /** One accumulation group's gradients: up to grad_accumulation micro-batches of one epoch. */
  private async accumulateGroup(s: Session): Promise<AccumulatedGroup> {
    const t = this.config.training;
    const p = s.progress;
    const group: AccumulatedGroup = { micro: 0, realTokens: 0, nativeSeconds: 0 };
    let groupEpoch: number | undefined;
    for (; group.micro < t.grad_accumulation; group.micro++) {
      // An accumulation group never spans two epochs (the step count assumes it): a group
      // that reaches its epoch's last batch is an update of its own, even if short. The cursor
      // stays at the end of that epoch, and the iterator moves on when asked for more.
      if (groupEpoch !== undefined && s.batches.atEpochEnd) break;
      const batch = s.batches.next();
      if (!batch) break;
      groupEpoch ??= batch.epoch;
      p.epoch = batch.epoch;
      group.realTokens += batch.realTokens;
      const nativeBatch = toNativeBatch(batch);
      const options = { dropoutSeed: dropoutSeed(t.seed, p.step, group.micro), checkpoint: t.grad_checkpointing };
      await withMemoryHint(() => timed(group, s.model.native.accumulateGradients(nativeBatch, options)), this.memoryContext(p, 'forward/backward', batch));
    }
    return group;
  }

  /** AdamW on the accumulated gradients, then the step (or nonfinite/skip) event. */
  private async applyUpdate(s: Session, group: AccumulatedGroup, stepStart: number): Promise<void> {
    const t = this.config.training;
    const p = s.progress;
    const update = await withMemoryHint(
      () => timed(group, s.model.native.applyOptimizer({ learningRate: p.lr, weightDecay: t.weight_decay, maxGradNorm: t.max_grad_norm })),
      this.memoryContext(p, 'optimizer update'),
    );
    const outcome = classifyUpdate(update);
    if (outcome.kind === 'nonfinite') {
      p.nonfinite++;
      this.emit({ type: 'nonfinite', time: now(), step: p.step, loss: outcome.loss, grad_norm: outcome.gradNorm, count: p.nonfinite });
      if (p.nonfinite > t.max_nonfinite_steps) {
        throw new TrainingError(`${p.nonfinite} updates had a NaN/Inf loss or gradient (training.max_nonfinite_steps is ${t.max_nonfinite_steps}); lower training.learning_rate or check the data`, 'nonfinite_limit');
      }
    } else if (outcome.kind === 'empty') {
      this.emit({ type: 'skip', time: now(), step: p.step, reason: 'no_supervised_tokens', tokens: group.realTokens });
    }
    p.step++;
    const seconds = (performance.now() - stepStart) / 1000;
    p.rate = p.rate === undefined ? seconds : 0.8 * p.rate + 0.2 * seconds;
    if (outcome.kind !== 'applied') return;
    const mem = await memory();
    this.emit({
      type: 'step',
      time: now(),
      step: p.step,
      epoch: p.epoch,
      loss: outcome.loss,
      lr: p.lr,
      grad_norm: outcome.gradNorm,
      tokens: group.realTokens,
      supervised_tokens: Math.round(update.tokens),
      tokens_per_sec: group.realTokens / seconds,
      supervised_tokens_per_sec: update.tokens / seconds,
      peak_memory_bytes: mem.peak,
      active_memory_bytes: mem.active,
      eta_seconds: p.rate * (s.totalSteps - p.step),
      step_seconds: seconds,
      native_seconds: group.nativeSeconds,
    });
  }

  /** Validation loss and its event; undefined without a validation split or when Ctrl+C cut it. */
  private async evaluate(s: Session): Promise<ValidationRecord | undefined> {
    const p = s.progress;
    const valid = this.data?.valid;
    if (!valid || valid.size === 0) return void (p.evaluatedAt = p.step);
    const r = await withMemoryHint(() => this.loss(valid, this.config.eval.max_batches), this.memoryContext(p, 'evaluation'));
    // A pass cut short by Ctrl+C measured only part of the set: it is no evaluation.
    if (r.aborted) return void (p.evaluationCut = true);
    p.evaluatedAt = p.step;
    const record = s.tracker.record(p.step, r.loss);
    const best = s.tracker.best;
    this.emit({
      type: 'eval',
      time: now(),
      step: p.step,
      val_loss: record.loss,
      val_loss_nonfinite: record.loss === null,
      perplexity: record.loss === null ? null : r.perplexity,
      is_best: record.isBest,
      best_val_loss: best?.metric ?? null,
      best_step: best?.step ?? null,
      evals_since_best: s.tracker.evalsSinceBest,
    });
    p.lastEval = { step: p.step, ...record };
    return record;
  }

  private async checkpoint(s: Session, reason: CheckpointEvent['reason']): Promise<void> {
    const p = s.progress;
    const t = this.config.training;
    const saved = await this.store!.save(
      {
        step: p.step,
        epoch: p.epoch,
        data_cursor: s.batches.cursor,
        dropout_keys: { seed: t.seed, scheme: 'sha256(seed:step:micro)' },
        schedule: { total_steps: s.totalSteps, learning_rate: p.lr },
        best: s.tracker.best,
        // Retention keeps the checkpoint with the lowest of these: the best one.
        eval_loss: p.lastEval?.step === p.step ? p.lastEval.loss : null,
        evals_since_best: s.tracker.evalsSinceBest,
        nonfinite_count: p.nonfinite,
        config_hash: s.configHash,
      },
      checkpointWriters(s.model.native, s.adapterConfig),
    );
    p.lastCheckpointStep = p.step;
    this.emit({ type: 'checkpoint', time: now(), step: p.step, path: saved.dir, reason });
  }

  /** The last evaluation and checkpoint, the final adapter, the test split, and the done event. */
  private async finish(s: Session, loopReason: DoneEvent['reason'], output: string): Promise<DoneEvent> {
    const p = s.progress;
    const reason = p.evaluationCut ? 'aborted' : loopReason;
    if (reason === 'aborted') {
      if (p.lastCheckpointStep !== p.step) await this.checkpoint(s, 'abort');
    } else {
      const evaluated = p.evaluatedAt === p.step ? undefined : await this.evaluate(s);
      // A checkpoint already at this step is written again when its evaluation came after it.
      if (p.lastCheckpointStep !== p.step || evaluated?.isBest) await this.checkpoint(s, 'final');
    }
    const adapterDir = await writeFolderAtomically(output, ADAPTER_DIR, adapterWriters(s.model.native, s.adapterConfig));
    const test = reason === 'aborted' ? null : await this.testLoss(this.memoryContext(p, 'test evaluation'));
    const best = s.tracker.best;
    const done: DoneEvent = {
      type: 'done',
      time: now(),
      step: p.step,
      reason,
      best: best ? { step: best.step, val_loss: best.metric } : null,
      adapter_path: adapterDir,
      test,
      elapsed_seconds: (performance.now() - this.started) / 1000,
    };
    this.emit(done);
    return done;
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
