/**
 * Per-position logits from llama.cpp (node-llama-cpp's prebuilt CPU binary), up to a constant per
 * row. node-llama-cpp 3.21 returns no raw logits, only the softmax of all candidates after its
 * sampler chain; with sampling left at its greedy default the chain keeps every token, so
 * log p = z − logsumexp(z), and subtracting each row's mean gives z − mean(z) exactly in float64
 * apart from float32 rounding of p (relative ~1e-7). Compare with `centered` of other logits.
 */
import { getLlama, LlamaLogLevel, type Llama, type Token } from 'node-llama-cpp';

let llamaPromise: Promise<Llama> | undefined;

function sharedLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  return llamaPromise;
}

/** A row minus its mean. */
export function centered(row: ArrayLike<number>): Float64Array {
  let mean = 0;
  for (let i = 0; i < row.length; i++) mean += row[i]!;
  mean /= row.length;
  return Float64Array.from({ length: row.length }, (_, i) => row[i]! - mean);
}

/** Row i: llama.cpp's logits after tokens[0..i], centered. Fresh context per call; F32 KV cache. */
export async function llamaCppCenteredLogits(ggufPath: string, tokens: readonly number[], vocab: number): Promise<Float64Array[]> {
  const llama = await sharedLlama();
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
  try {
    // Room beyond the tokens: with the context exactly full, the last position's logits come out wrong.
    const contextSize = tokens.length + 32;
    const context = await model.createContext({
      contextSize,
      batchSize: contextSize,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    try {
      const out = await context.getSequence().controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { probabilities: true } }]));
      return tokens.map((_, i) => {
        const probabilities = out[i]?.next.probabilities;
        if (probabilities === undefined || probabilities.size !== vocab) {
          throw new Error(`llama.cpp gave ${probabilities?.size ?? 'no'} probabilities at position ${i}, expected ${vocab}`);
        }
        const logp = new Float64Array(vocab);
        for (const [token, p] of probabilities) logp[token] = Math.log(p);
        return centered(logp);
      });
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
