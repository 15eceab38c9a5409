/**
 * MinHash signatures over word 3-gram shingles, LSH banding to find candidate pairs, and the
 * verification that keeps a candidate only when its estimated Jaccard similarity is high enough.
 *
 * 256 permutations: the estimate of a pair's Jaccard J has a standard deviation of
 * sqrt(J(1-J)/256), about 0.02 near 0.85, which is what lets verification separate pairs a few
 * hundredths apart. (64 gave 0.045: too coarse to verify with.) Each permutation is an affine map
 * of the already-mixed shingle hash, so a signature costs one multiply-add per shingle and
 * permutation. Verification compares a compact copy (one byte per permutation, 256 bytes per
 * record on disk), corrected for the 1-in-256 chance that two different minima share a byte.
 */
import { normalizeText } from './content-hash.js';

export const NUM_PERM = 256;
const SHINGLE = 3;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// Odd multipliers make each map a permutation of the 32-bit values.
const PERM_A = Uint32Array.from({ length: NUM_PERM }, (_, i) => (fmix32((i + 1) * 0x9e3779b9) | 1) >>> 0);
const PERM_B = Uint32Array.from({ length: NUM_PERM }, (_, i) => fmix32((i + 1) * 0x7f4a7c15 + 0x632be5ab));

export function shingleHashes(text: string): Uint32Array {
  const words = normalizeText(text).toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const wordHashes = words.map(fnv1a);
  const set = new Set<number>();
  if (wordHashes.length < SHINGLE) {
    set.add(fmix32(wordHashes.reduce((h, w) => Math.imul(h, 31) ^ w, 17)));
  } else {
    for (let i = 0; i + SHINGLE <= wordHashes.length; i++) {
      let h = 17;
      for (let k = 0; k < SHINGLE; k++) h = Math.imul(h, 31) ^ wordHashes[i + k]!;
      set.add(fmix32(h));
    }
  }
  return Uint32Array.from(set);
}

/** The MinHash signature of a set of (well-mixed) 32-bit shingle hashes. */
export function signatureOfShingles(shingles: Uint32Array): Uint32Array {
  const sig = new Uint32Array(NUM_PERM);
  for (let p = 0; p < NUM_PERM; p++) {
    const a = PERM_A[p]!;
    const b = PERM_B[p]!;
    let min = 0xffffffff;
    for (let i = 0; i < shingles.length; i++) {
      const v = (Math.imul(a, shingles[i]!) + b) >>> 0;
      if (v < min) min = v;
    }
    sig[p] = min;
  }
  return sig;
}

export function minhashSignature(text: string): Uint32Array {
  return signatureOfShingles(shingleHashes(text));
}

/** Estimated Jaccard similarity of two full signatures (fraction of equal minima). */
export function signatureSimilarity(a: Uint32Array, b: Uint32Array): number {
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return eq / a.length;
}

/** One byte per permutation, for verification from disk. */
export function compactSignature(signature: Uint32Array): Uint8Array {
  const out = new Uint8Array(signature.length);
  // A hash of the minimum, not its low bits: minima of affine maps share structure in low bits.
  for (let i = 0; i < signature.length; i++) out[i] = fmix32(signature[i]!) >>> 24;
  return out;
}

/** Estimated Jaccard from compact signatures, corrected for chance byte matches (1/256 each). */
export function compactSimilarity(a: Uint8Array, b: Uint8Array): number {
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  const chance = 1 / 256;
  return Math.max(0, (eq / a.length - chance) / (1 - chance));
}

export interface LshParams {
  bands: number;
  rows: number;
  /** Candidates are kept as near duplicates when their estimated Jaccard is at least this. */
  acceptAt: number;
}

/** Probability that a pair with Jaccard s shares at least one band. */
export function candidateProbability(s: number, { bands, rows }: Pick<LshParams, 'bands' | 'rows'>): number {
  return 1 - (1 - s ** rows) ** bands;
}

/**
 * Parameters for a Jaccard threshold t. The acceptance level is set so that a pair at t + 0.02 is
 * accepted 95% of the time despite the estimate's noise (never above t, so a pair at t itself still
 * passes at least half the time); pairs 0.05 below t then pass ~10%, 0.1 below ~0.1%. Bands are as
 * few as possible (fewer keys to spill, fewer candidates to check) while a pair at the acceptance
 * level still becomes a candidate 99% of the time, so banding loses almost nothing verification
 * would accept.
 */
export function lshParams(threshold: number, numPerm = NUM_PERM): LshParams {
  const target = Math.min(1, threshold + 0.02);
  const sd = Math.sqrt((target * (1 - target)) / numPerm);
  const acceptAt = Math.min(threshold, target - 1.645 * sd);
  let best: LshParams = { bands: numPerm, rows: 1, acceptAt };
  for (let rows = 1; rows <= numPerm; rows++) {
    const bands = Math.floor(numPerm / rows);
    if (candidateProbability(acceptAt, { bands, rows }) >= 0.99) best = { bands, rows, acceptAt };
  }
  return best;
}

/** One 64-bit key (two u32) per band, band index mixed in so bands never collide with each other. */
export function bandKeys(signature: Uint32Array, { bands, rows }: LshParams): Uint32Array {
  const out = new Uint32Array(bands * 2);
  for (let b = 0; b < bands; b++) {
    let h1 = fmix32(0x5bd1e995 ^ b);
    let h2 = fmix32(0x27d4eb2f ^ b);
    for (let r = 0; r < rows; r++) {
      const v = signature[b * rows + r]!;
      h1 = fmix32(Math.imul(h1, 31) ^ v);
      h2 = fmix32(Math.imul(h2 ^ v, 0x9e3779b1));
    }
    out[b * 2] = h1;
    out[b * 2 + 1] = h2;
  }
  return out;
}
