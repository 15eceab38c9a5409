/** Errors that end a training run, with a stable code for scripts. */
export class TrainingError extends Error {
  override readonly name = 'TrainingError';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** MLX's allocation failures, turned into advice on what to lower. */
export function outOfMemoryHint(error: unknown, rows: number, width: number, step: number): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (!/unable to allocate|out of memory|insufficient memory|\[malloc\]|std::bad_alloc/i.test(message)) return error;
  return new TrainingError(
    `out of memory at step ${step} on a batch of ${rows} × ${width} tokens (${message}). ` +
      'Lower training.batch_size (and raise training.grad_accumulation to keep the effective batch), ' +
      'lower data.max_seq_length, set training.grad_checkpointing: true, or lower lora.rank.',
    'out_of_memory',
  );
}
