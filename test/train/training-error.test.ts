import { describe, expect, it } from 'vitest';
import { outOfMemoryHint, TrainingError, withMemoryHint, type MemoryContext } from '../../lib/train/training-error.js';

const context: MemoryContext = {
  step: 12,
  phase: 'forward/backward',
  batch: { rows: 4, width: 2048 },
  settings: { batchSize: 4, maxSeqLength: 2048, gradCheckpointing: false, rank: 64 },
};

// The messages MLX throws (mlx/backend/metal/allocator.cpp, the CPU allocator's std::bad_alloc).
const MLX_MESSAGES = {
  cpu: 'std::bad_alloc',
  malloc: '[malloc] Unable to allocate 17179869184 bytes.',
  metalBufferSize: '[metal::malloc] Attempting to allocate 34359738368 bytes which is greater than the maximum allowed buffer size of 17179869184 bytes.',
  metalResources: '[metal::malloc] Resource limit (499000) exceeded.',
};

describe('outOfMemoryHint', () => {
  it.each(Object.entries(MLX_MESSAGES))('turns the %s allocation failure into advice on what to lower', (_, message) => {
    const hinted = outOfMemoryHint(new Error(message), context);
    expect(hinted).toBeInstanceOf(TrainingError);
    const error = hinted as TrainingError;
    expect(error.code).toBe('out_of_memory');
    expect(error.message).toContain('out of memory at step 12 in the forward/backward on a batch of 4 × 2048 tokens');
    expect(error.message).toContain(message);
    expect(error.message).toContain('lower training.batch_size (now 4; raise training.grad_accumulation');
    expect(error.message).toContain('lower data.max_seq_length (now 2048)');
    expect(error.message).toContain('set training.grad_checkpointing: true');
    expect(error.message).toContain('lower lora.rank (now 64)');
  });

  it('does not suggest gradient checkpointing when it is on, and names a phase without a batch', () => {
    const { batch: _, ...withoutBatch } = context;
    const error = outOfMemoryHint(new Error(MLX_MESSAGES.metalBufferSize), {
      ...withoutBatch,
      phase: 'optimizer update',
      settings: { ...context.settings, gradCheckpointing: true },
    }) as TrainingError;
    expect(error.message).toMatch(/^out of memory at step 12 in the optimizer update \(\[metal::malloc\]/);
    expect(error.message).not.toContain('grad_checkpointing');
  });

  it('passes any other error through unchanged', () => {
    const shape = new Error('[matmul] Last dimension of first input with shape (4,64) must match second dimension of second input with shape (32,8).');
    expect(outOfMemoryHint(shape, context)).toBe(shape);
  });

  it('withMemoryHint rejects with the hint when the work fails for memory, and passes results through', async () => {
    await expect(withMemoryHint(() => Promise.reject(new Error(MLX_MESSAGES.metalResources)), { ...context, phase: 'evaluation' })).rejects.toMatchObject({
      code: 'out_of_memory',
      message: expect.stringContaining('in the evaluation'),
    });
    await expect(withMemoryHint(() => Promise.resolve(7), context)).resolves.toBe(7);
  });
});
