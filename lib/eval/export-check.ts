/**
 * Did the export keep the model? The exported GGUF runs in llama.cpp (node-llama-cpp, an optional
 * dependency loaded only here) on the eval sequences, and its next-token distribution at every
 * position is compared with ours (the MLX model with the adapter): mean KL(ours ‖ llama.cpp),
 * top-1 agreement, and both perplexities on the references.
 */
import { availableParallelism } from 'node:os';
import type { Llama, Token } from 'node-llama-cpp';
import type { NativeModel } from '../native.js';
import { argmax, logSumExp, sequenceLogits } from './likelihood.js';

export interface ExportCheck {
  readonly gguf: string;
  /** The arm whose MLX model is the reference. */
  readonly against: string;
  readonly sequences: number;
  /** Next-token distributions compared (every position of every sequence). */
  readonly positions: number;
  /** Mean over positions of KL(ours ‖ llama.cpp), nats. */
  readonly mean_kl: number;
  readonly max_kl: number;
  /** Share of positions where both argmaxes are the same token. */
  readonly top1_agreement: number;
  /** On the supervised (reference) tokens; null without references. */
  readonly perplexity_llama_cpp: number | null;
  readonly perplexity_ours: number | null;
  readonly scored_tokens: number;
}

export interface CheckSequence {
  readonly tokens: ArrayLike<number>;
  /** 1 on reference tokens; absent: no perplexity from this sequence. */
  readonly mask?: ArrayLike<number>;
}

/** float32 probabilities below this are 0 after llama.cpp's softmax; log(0) would make one position's KL infinite. */
const PROBABILITY_FLOOR = 1e-45;

let llamaRuntime: Promise<Llama> | undefined;

/** llama.cpp through node-llama-cpp, loaded once; a clear error when the optional package is missing. */
export async function llama(): Promise<Llama> {
  llamaRuntime ??= (async () => {
    let mod: typeof import('node-llama-cpp');
    try {
      mod = await import('node-llama-cpp');
    } catch (error) {
      throw new Error(`the export check needs node-llama-cpp (an optional dependency): install it with \`npm install node-llama-cpp\` (${(error as Error).message})`);
    }
    return mod.getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: mod.LlamaLogLevel.error });
  })();
  return llamaRuntime;
}

/** llama.cpp's log-probabilities at every position of `tokens` (row i predicts token i + 1). */
async function llamaLogProbs(ggufPath: string, sequences: readonly CheckSequence[], vocab: number, each: (i: number, rows: Float64Array[]) => void): Promise<void> {
  const runtime = await llama();
  const model = await runtime.loadModel({ modelPath: ggufPath, gpuLayers: 0 }).catch((error: Error) => {
    throw new Error(`llama.cpp could not load ${ggufPath}: ${error.message}`);
  });
  try {
    // Room beyond the longest sequence: with the context exactly full, the last position's logits come out wrong.
    const contextSize = Math.max(...sequences.map((s) => s.tokens.length)) + 32;
    const context = await model.createContext({
      contextSize,
      batchSize: contextSize,
      threads: Math.max(1, Math.min(4, availableParallelism())),
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    try {
      const sequence = context.getSequence();
      for (const [i, s] of sequences.entries()) {
        await sequence.clearHistory();
        // node-llama-cpp 3.x gives no raw logits, only the softmax after its sampler chain, which
        // keeps every token at its greedy default: log p is exact up to float32 rounding of p.
        const out = await sequence.controlledEvaluate(Array.from(s.tokens, (t) => [t as Token, { generateNext: { probabilities: true } }] as const));
        const rows = Array.from(s.tokens, (_, at) => {
          const probabilities = out[at]?.next.probabilities;
          if (probabilities === undefined || probabilities.size !== vocab) {
            throw new Error(`${ggufPath}: llama.cpp gave ${probabilities?.size ?? 'no'} probabilities at position ${at}, expected ${vocab} (is it the same vocabulary?)`);
          }
          const logp = new Float64Array(vocab).fill(Math.log(PROBABILITY_FLOOR));
          let sum = 0;
          for (const [token, p] of probabilities) {
            logp[token] = Math.log(Math.max(p, PROBABILITY_FLOOR));
            sum += Math.max(p, PROBABILITY_FLOOR);
          }
          // Renormalised: float32 probabilities sum to 1 only within ~1e-7, which would swamp the KL of a lossless export.
          const logSum = Math.log(sum);
          for (let v = 0; v < vocab; v++) logp[v] = logp[v]! - logSum;
          return logp;
        });
        each(i, rows);
      }
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** KL(p ‖ q) with p from logits (float64 softmax) and q as log-probabilities. */
function klFromLogits(logits: Float32Array, logq: Float64Array): number {
  const lse = logSumExp(logits);
  let kl = 0;
  for (let v = 0; v < logits.length; v++) {
    const logp = logits[v]! - lse;
    kl += Math.exp(logp) * (logp - logq[v]!);
  }
  return Math.max(0, kl);
}

function argmax64(row: Float64Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

export async function checkExport(ggufPath: string, ours: NativeModel, lora: boolean, against: string, sequences: readonly CheckSequence[]): Promise<ExportCheck> {
  if (sequences.length === 0) throw new Error('the export check needs at least one eval sequence');
  const oursLogits: { values: Float32Array; vocab: number }[] = [];
  for (const s of sequences) oursLogits.push(await sequenceLogits(ours, s.tokens, lora));
  const vocab = oursLogits[0]!.vocab;
  let positions = 0, klSum = 0, klMax = 0, agree = 0, nllLlama = 0, nllOurs = 0, scored = 0;
  await llamaLogProbs(ggufPath, sequences, vocab, (i, rows) => {
    const { values } = oursLogits[i]!;
    const s = sequences[i]!;
    rows.forEach((logq, at) => {
      const row = values.subarray(at * vocab, (at + 1) * vocab);
      const kl = klFromLogits(row, logq);
      klSum += kl;
      klMax = Math.max(klMax, kl);
      if (argmax(row) === argmax64(logq)) agree++;
      positions++;
      const next = at + 1;
      if (s.mask && next < s.tokens.length && s.mask[next] === 1) {
        const target = s.tokens[next]!;
        nllLlama -= logq[target]!;
        nllOurs += logSumExp(row) - row[target]!;
        scored++;
      }
    });
  });
  const ppl = (nll: number) => (scored > 0 ? Math.exp(nll / scored) : null);
  return {
    gguf: ggufPath,
    against,
    sequences: sequences.length,
    positions,
    mean_kl: klSum / positions,
    max_kl: klMax,
    top1_agreement: agree / positions,
    perplexity_llama_cpp: ppl(nllLlama),
    perplexity_ours: ppl(nllOurs),
    scored_tokens: scored,
  };
}
