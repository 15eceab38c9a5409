import { z } from 'zod';

/**
 * What a training run reports, as a discriminated union on `type`. The same objects go to the
 * run handle's async iterator and, one JSON line each, to `metrics.jsonl`, so field names are
 * snake_case like the config and stable: scripts parse them. Non-finite numbers cannot be written
 * as JSON, so fields that may be NaN/Inf are nullable and carry null then.
 */

const base = {
  /** ISO-8601 wall-clock time the event was produced. */
  time: z.iso.datetime(),
  /** Optimizer updates completed when the event was produced. */
  step: z.int().min(0),
};

const overlongCountsSchema = z.strictObject({
  /** Cut to max_seq_length tokens (loss mask included) and kept. */
  truncated: z.int().min(0),
  /** Cut, then left out: no supervised token was left. */
  truncated_away: z.int().min(0),
  /** Left out by the `drop` policy. */
  dropped: z.int().min(0),
});

export const startEventSchema = z.strictObject({
  type: z.literal('start'),
  ...base,
  total_steps: z.int().min(1),
  /** Checkpoint folder the run resumed from, or null for a fresh run. */
  resumed_from: z.string().nullable(),
  config_hash: z.string(),
  library_version: z.string(),
  /** Records over data.max_seq_length and what data.overlong did to them, per split (null: no such split). */
  overlong: z
    .strictObject({
      policy: z.enum(['truncate', 'drop']),
      max_seq_length: z.int().min(2),
      train: overlongCountsSchema,
      valid: overlongCountsSchema.nullable(),
      test: overlongCountsSchema.nullable(),
    })
    .optional(),
});

export const stepEventSchema = z.strictObject({
  type: z.literal('step'),
  ...base,
  epoch: z.int().min(0),
  loss: z.number(),
  /** Learning rate used for this update. */
  lr: z.number().min(0),
  /** Global gradient norm before clipping. */
  grad_norm: z.number().min(0),
  /** Tokens fed through the model in this update, padding excluded. */
  tokens: z.int().min(0),
  /** Tokens that carried loss in this update. */
  supervised_tokens: z.int().min(0),
  tokens_per_sec: z.number().min(0),
  supervised_tokens_per_sec: z.number().min(0),
  /** MLX peak memory since the run started, in bytes. */
  peak_memory_bytes: z.int().min(0),
  /** MLX memory in use after the update, in bytes. */
  active_memory_bytes: z.int().min(0),
  /** Estimated seconds to the end of the run, null until there is a rate to go by. */
  eta_seconds: z.number().min(0).nullable(),
  /** Wall time of this update, and the part of it spent waiting on the native step. */
  step_seconds: z.number().min(0),
  native_seconds: z.number().min(0),
});

/** An update skipped because its loss or gradient was NaN/Inf. */
export const nonfiniteEventSchema = z.strictObject({
  type: z.literal('nonfinite'),
  ...base,
  loss: z.number().nullable(),
  grad_norm: z.number().nullable(),
  /** Skipped updates so far in the run, this one included. */
  count: z.int().min(1),
});

/** An update skipped because its accumulation group had no supervised token: nothing to learn. */
export const skipEventSchema = z.strictObject({
  type: z.literal('skip'),
  ...base,
  reason: z.enum(['no_supervised_tokens']),
  /** Tokens fed through the model for nothing, padding excluded. */
  tokens: z.int().min(0),
});

export const evalEventSchema = z.strictObject({
  type: z.literal('eval'),
  ...base,
  /** Null when the loss was NaN/Inf (then `val_loss_nonfinite` is true). */
  val_loss: z.number().nullable(),
  // Defaulted so lines written before the flag existed still read.
  val_loss_nonfinite: z.boolean().default(false),
  /** exp(val_loss); null when it overflows or the loss is not finite. */
  perplexity: z.number().nullable(),
  /** A non-finite loss is never the best. */
  is_best: z.boolean(),
  /** Null until some evaluation gave a finite loss. */
  best_val_loss: z.number().nullable(),
  best_step: z.int().min(0).nullable(),
  evals_since_best: z.int().min(0),
});

export const checkpointEventSchema = z.strictObject({
  type: z.literal('checkpoint'),
  ...base,
  path: z.string(),
  /** `best`: written because this step's evaluation is a new best and no other checkpoint was due. */
  reason: z.enum(['interval', 'best', 'abort', 'final']),
});

export const doneEventSchema = z.strictObject({
  type: z.literal('done'),
  ...base,
  reason: z.enum(['completed', 'early_stopping', 'aborted']),
  best: z.strictObject({ step: z.int().min(0), val_loss: z.number() }).nullable(),
  /** Folder of the final adapter, or null when none was written. */
  adapter_path: z.string().nullable(),
  /**
   * The test split (data.test, or a prepared folder's test split) evaluated once after training;
   * null without one or when the run was aborted. `loss` is null when NaN/Inf.
   */
  test: z
    .strictObject({
      loss: z.number().nullable(),
      perplexity: z.number().nullable(),
      /** Supervised tokens the loss is averaged over. */
      tokens: z.int().min(0),
      records: z.int().min(0),
    })
    .nullable()
    .optional(),
  elapsed_seconds: z.number().min(0),
});

export const errorEventSchema = z.strictObject({
  type: z.literal('error'),
  ...base,
  message: z.string(),
  /** A stable machine-readable reason when there is one (e.g. "out_of_memory", "nonfinite_limit"). */
  code: z.string().optional(),
});

export const runEventSchema = z.discriminatedUnion('type', [
  startEventSchema,
  stepEventSchema,
  nonfiniteEventSchema,
  skipEventSchema,
  evalEventSchema,
  checkpointEventSchema,
  doneEventSchema,
  errorEventSchema,
]);

export type StartEvent = z.output<typeof startEventSchema>;
export type StepEvent = z.output<typeof stepEventSchema>;
export type NonfiniteEvent = z.output<typeof nonfiniteEventSchema>;
export type SkipEvent = z.output<typeof skipEventSchema>;
export type EvalEvent = z.output<typeof evalEventSchema>;
export type CheckpointEvent = z.output<typeof checkpointEventSchema>;
export type DoneEvent = z.output<typeof doneEventSchema>;
export type ErrorEvent = z.output<typeof errorEventSchema>;
export type RunEvent = z.output<typeof runEventSchema>;
export type RunEventType = RunEvent['type'];

export interface EventChannelOptions<T> {
  /** Most events held for a consumer that is behind; default 1024. */
  capacity?: number;
  /** Events that may be dropped first when the buffer is full. */
  droppable?: (event: T) => boolean;
}

/**
 * A single-consumer async-iterable queue that never makes the producer wait.
 *
 * Policy: `push` returns at once. Events wait in a buffer of at most `capacity`; when a push finds
 * it full, the oldest droppable event (for runs: the oldest `step` event) is discarded, or the
 * oldest event of any kind if none is droppable, and `dropped` counts it. So a consumer that
 * stalls costs bounded memory and loses intermediate progress, while the rarer events (eval,
 * checkpoint) and the last one (done/error, always the newest) get through. A consumer that
 * stops iterating (break, return) detaches, and later events are discarded. Complete records of
 * every event are the metrics log's job, not this channel's.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffer: T[] = [];
  private readonly capacity: number;
  private readonly droppable: (event: T) => boolean;
  private waiting: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void } | undefined;
  private closed = false;
  private failure: { error: unknown } | undefined;
  private detached = false;
  private iterated = false;
  /** Events discarded because the consumer was too far behind. */
  dropped = 0;

  constructor(options: EventChannelOptions<T> = {}) {
    this.capacity = options.capacity ?? 1024;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) {
      throw new RangeError(`EventChannel: capacity must be an integer >= 1, got ${this.capacity}`);
    }
    this.droppable = options.droppable ?? (() => true);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  push(event: T): void {
    if (this.closed) throw new Error('EventChannel: push after close');
    if (this.detached) return;
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting.resolve({ value: event, done: false });
      return;
    }
    if (this.buffer.length >= this.capacity) {
      const index = this.buffer.findIndex(this.droppable);
      this.buffer.splice(index === -1 ? 0 : index, 1);
      this.dropped++;
    }
    this.buffer.push(event);
  }

  /** Ends the stream; the consumer still receives what is buffered. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.settleWaiting();
  }

  /** Ends the stream with an error, which the consumer gets after the buffered events. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = { error };
    this.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error('EventChannel: only one consumer may iterate the events');
    this.iterated = true;
    return {
      next: () => this.next(),
      return: async () => {
        this.detached = true;
        this.buffer.length = 0;
        return { value: undefined, done: true };
      },
    };
  }

  private next(): Promise<IteratorResult<T>> {
    if (this.buffer.length > 0) return Promise.resolve({ value: this.buffer.shift() as T, done: false });
    if (this.closed || this.detached) return this.endResult();
    if (this.waiting) return Promise.reject(new Error('EventChannel: next() called before the previous one settled'));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  private settleWaiting(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    this.waiting = undefined;
    this.endResult().then(waiting.resolve, waiting.reject);
  }

  private endResult(): Promise<IteratorResult<T>> {
    if (this.failure) {
      const { error } = this.failure;
      // Reported once; a consumer that keeps calling next() then sees a plain end.
      this.failure = undefined;
      return Promise.reject(error);
    }
    return Promise.resolve({ value: undefined, done: true });
  }
}

/** The channel a training run reports through: step events are the ones dropped when full. */
export function createRunEventChannel(capacity = 1024): EventChannel<RunEvent> {
  return new EventChannel<RunEvent>({ capacity, droppable: (event) => event.type === 'step' });
}
