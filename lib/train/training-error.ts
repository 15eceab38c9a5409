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

/**
 * MLX's allocation failures: the CPU backend's std::bad_alloc, "[malloc] Unable to allocate" (Metal
 * and CUDA when the system refuses), and Metal's own "[metal::malloc]" errors for one buffer over the
 * device's maximum buffer size or too many buffers ("Resource limit (…) exceeded").
 */
const OUT_OF_MEMORY = /std::bad_alloc|\[(?:metal::|cuda::)?malloc\]|unable to allocate|out of memory|insufficient memory|maximum allowed buffer size|resource limit \(\d+\) exceeded/i;

export interface MemoryContext {
  step: number;
  /** What was running: "forward/backward", "optimizer update", "evaluation". */
  phase: string;
  /** The batch in flight, when there is one. */
  batch?: { rows: number; width: number };
  /** The settings worth lowering, with their current values. */
  settings: { batchSize: number; maxSeqLength: number; gradCheckpointing: boolean; rank: number };
}

/** An MLX allocation failure turned into advice on what to lower; any other error as it was. */
export function outOfMemoryHint(error: unknown, context: MemoryContext): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (!OUT_OF_MEMORY.test(message)) return error;
  const { step, phase, batch, settings } = context;
  const where = batch ? ` on a batch of ${batch.rows} × ${batch.width} tokens` : '';
  const advice = [
    `lower training.batch_size (now ${settings.batchSize}; raise training.grad_accumulation to keep the effective batch)`,
    `lower data.max_seq_length (now ${settings.maxSeqLength})`,
    ...(settings.gradCheckpointing ? [] : ['set training.grad_checkpointing: true']),
    `lower lora.rank (now ${settings.rank})`,
  ];
  return new TrainingError(`out of memory at step ${step} in the ${phase}${where} (${message}). To fit: ${advice.join(', ')}.`, 'out_of_memory');
}

/** Runs `work`, turning an allocation failure into `outOfMemoryHint`'s advice. */
export async function withMemoryHint<T>(work: () => Promise<T>, context: MemoryContext): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw outOfMemoryHint(error, context);
  }
}
