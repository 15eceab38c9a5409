/**
 * Exact and near-duplicate detection with memory that does not grow with the corpus beyond 5 bytes
 * per record: keys (64-bit exact content hash, and one 64-bit LSH band key per band) are spilled to
 * partition files by key; each partition is then loaded alone and colliding records are joined in a
 * union-find whose root is the earliest record, which is the one kept. Near duplicates thus form
 * clusters (A~B, B~C drops B and C) as in MinHash-LSH dedupe tools.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BufferedFileWriter } from './buffered-file.js';

const EXACT_FLAG = 0x80000000;
const EMPTY = 0xffffffff;

export const DUPLICATE_STATUS = { unique: 0, exact: 1, near: 2 } as const;

export interface DuplicateResult {
  /** Per record: 0 unique (kept), 1 exact duplicate, 2 near duplicate. */
  status: Uint8Array;
  /** Per record: the record it duplicates (itself when kept). */
  keptAs: Uint32Array;
}

export class DuplicateIndex {
  private readonly writers: BufferedFileWriter[];
  private readonly entry = new Uint32Array(3);
  private count = 0;

  constructor(
    private readonly dir: string,
    private readonly partitions = 64,
  ) {
    mkdirSync(dir, { recursive: true });
    this.writers = Array.from({ length: partitions }, (_, p) => new BufferedFileWriter(join(dir, `keys-${p}.u32`), { bufferBytes: 1 << 16 }));
  }

  private put(hi: number, lo: number, record: number): void {
    this.entry[0] = hi;
    this.entry[1] = lo;
    this.entry[2] = record;
    this.writers[hi % this.partitions]!.writeTyped(this.entry);
  }

  /** Records must be added in order 0, 1, 2, ...; `bands` holds (hi, lo) pairs or is null. */
  add(record: number, exactHi: number, exactLo: number, bands: Uint32Array | null): void {
    if (record !== this.count) throw new Error(`DuplicateIndex: record ${record} added out of order (expected ${this.count})`);
    if (record >= EXACT_FLAG) throw new Error('DuplicateIndex: more than 2^31 records');
    this.count++;
    this.put(exactHi >>> 0, exactLo >>> 0, (record | EXACT_FLAG) >>> 0);
    if (bands) for (let b = 0; b < bands.length; b += 2) this.put(bands[b]!, bands[b + 1]!, record);
  }

  finish(): DuplicateResult {
    for (const w of this.writers) w.close();
    const parent = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) parent[i] = i;
    const exact = new Uint8Array(this.count);
    const find = (x: number): number => {
      let root = x;
      while (parent[root] !== root) root = parent[root]!;
      while (parent[x] !== root) {
        const next = parent[x]!;
        parent[x] = root;
        x = next;
      }
      return root;
    };
    const union = (a: number, b: number): void => {
      const ra = find(a);
      const rb = find(b);
      if (ra < rb) parent[rb] = ra;
      else if (rb < ra) parent[ra] = rb;
    };

    for (let p = 0; p < this.partitions; p++) {
      const path = join(this.dir, `keys-${p}.u32`);
      const buf = readFileSync(path);
      const entries = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const n = entries.length / 3;
      let cap = 16;
      while (cap < n * 2) cap *= 2;
      const mask = cap - 1;
      const keysHi = new Uint32Array(cap);
      const keysLo = new Uint32Array(cap);
      const first = new Uint32Array(cap).fill(EMPTY);
      // Entries are in record order within a partition, so the first holder of a key is the earliest.
      for (let e = 0; e < n; e++) {
        const hi = entries[e * 3]!;
        const lo = entries[e * 3 + 1]!;
        const tagged = entries[e * 3 + 2]!;
        const record = tagged & ~EXACT_FLAG;
        let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
        for (;;) {
          if (first[slot] === EMPTY) {
            keysHi[slot] = hi;
            keysLo[slot] = lo;
            first[slot] = record;
            break;
          }
          if (keysHi[slot] === hi && keysLo[slot] === lo) {
            if (tagged & EXACT_FLAG) exact[record] = 1;
            union(first[slot]!, record);
            break;
          }
          slot = (slot + 1) & mask;
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });

    const status = new Uint8Array(this.count);
    const keptAs = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) {
      const root = find(i);
      keptAs[i] = root;
      if (root !== i) status[i] = exact[i] ? DUPLICATE_STATUS.exact : DUPLICATE_STATUS.near;
    }
    return { status, keptAs };
  }
}
