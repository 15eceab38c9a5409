/**
 * MinHash signatures over word 3-gram shingles and LSH banding, for near-duplicate detection.
 * Band count and width are chosen for the Jaccard threshold the way datasketch does (minimising
 * the false-positive and false-negative areas under the LSH S-curve).
 */
import { normalizeText } from './content-hash.js';

export const NUM_PERM = 64;
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

const PERM_SEEDS = Uint32Array.from({ length: NUM_PERM }, (_, i) => fmix32((i + 1) * 0x9e3779b9));

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

export function minhashSignature(text: string): Uint32Array {
  const sig = new Uint32Array(NUM_PERM).fill(0xffffffff);
  const shingles = shingleHashes(text);
  for (let p = 0; p < NUM_PERM; p++) {
    const seed = PERM_SEEDS[p]!;
    let min = 0xffffffff;
    for (let i = 0; i < shingles.length; i++) {
      const v = fmix32(shingles[i]! ^ seed);
      if (v < min) min = v;
    }
    sig[p] = min;
  }
  return sig;
}

/** Estimated Jaccard similarity of two signatures (fraction of equal minima). */
export function signatureSimilarity(a: Uint32Array, b: Uint32Array): number {
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return eq / a.length;
}

export interface LshParams {
  bands: number;
  rows: number;
}

function integrate(f: (x: number) => number, a: number, b: number): number {
  const steps = 200;
  const dx = (b - a) / steps;
  let area = 0;
  for (let i = 0; i < steps; i++) area += f(a + (i + 0.5) * dx) * dx;
  return area;
}

export function lshParams(threshold: number, numPerm = NUM_PERM): LshParams {
  let best: LshParams = { bands: 1, rows: numPerm };
  let bestError = Infinity;
  for (let bands = 1; bands <= numPerm; bands++) {
    const rows = Math.floor(numPerm / bands);
    const p = (s: number) => 1 - (1 - s ** rows) ** bands;
    const error = integrate(p, 0, threshold) + integrate((s) => 1 - p(s), threshold, 1);
    if (error < bestError) {
      bestError = error;
      best = { bands, rows };
    }
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
