import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GgufFormatError } from '../../lib/gguf/format-error.js';
import { readGguf, type GgufFile } from '../../lib/gguf/reader.js';
import { writeGguf } from '../../lib/gguf/writer.js';
import { createRng } from '../fixtures/rng.js';
import { RawGguf } from './raw-gguf.js';

let dir: string;
let good: Buffer;
let headerEnd: number;
let dataEnd: number;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gguf-bad-'));
  const path = join(dir, 'good.gguf');
  await writeGguf(path, {
    metadata: {
      'general.architecture': 'llama',
      'tokenizer.ggml.tokens': ['<unk>', '<s>', '</s>', '▁a'],
      'tokenizer.ggml.scores': [0, 0, 0, -1],
      'x.i64': -5n,
    },
    tensors: [
      { name: 'a', shape: [2, 32], type: 'Q8_0', data: new Uint8Array(68).fill(1) },
      { name: 'b', shape: [3], type: 'F32', data: new Uint8Array(12).fill(2) },
    ],
  });
  good = await readFile(path);
  const info = await readGguf(path);
  headerEnd = info.dataOffset;
  const last = info.tensors.at(-1);
  dataEnd = last === undefined ? headerEnd : last.offset + last.nbytes;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function parse(bytes: Uint8Array): Promise<{ path: string; result: Promise<GgufFile> }> {
  const path = join(dir, `case-${n++}.gguf`);
  await writeFile(path, bytes);
  return { path, result: readGguf(path) };
}

/**
 * Where `bytes` differs from a GGUF written back from `file` (its metadata with the stored types,
 * its tensor table, the tensor bytes it points at), or undefined if nowhere. The padding between
 * the tensor table and the data holds no value, so damage there may differ from the writer's zeros.
 */
async function reencodingMismatch(file: GgufFile, bytes: Buffer): Promise<string | undefined> {
  const metadata = new Map([...file.metadata].map(([key, value]) => [key, { type: file.metadataTypes.get(key)!, value }]));
  const tensors = file.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.ggmlType, data: bytes.subarray(t.offset, t.offset + t.nbytes) }));
  const copy = join(dir, `reencoded-${n++}.gguf`);
  const bare = join(dir, `reencoded-${n++}.gguf`);
  await writeGguf(copy, { metadata, tensors });
  // Without tensors the writer adds no padding: its size is where the tensor table starts.
  const tableStart = (await writeGguf(bare, { metadata })).size;
  const tableEnd = tableStart + file.tensors.reduce((s, t) => s + 8 + Buffer.byteLength(t.name) + 4 + 8 * t.ne.length + 4 + 8, 0);
  const written = await readFile(copy);
  // The writer always writes version 3; version 2 has the same layout.
  written.writeUInt32LE(file.version, 4);
  if (written.length !== bytes.length) return `length ${written.length}, file has ${bytes.length}`;
  for (let i = 0; i < bytes.length; i++) {
    if (i >= tableEnd && i < file.dataOffset) continue;
    if (written[i] !== bytes[i]) return `byte ${i}: written ${written[i]}, file has ${bytes[i]}`;
  }
  return undefined;
}

/** Expects a GgufFormatError whose message names the file and matches `message`. */
async function rejects(bytes: Uint8Array, message: RegExp): Promise<void> {
  const { path, result } = await parse(bytes);
  const err = await result.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GgufFormatError);
  expect((err as Error).message).toContain(path);
  expect((err as Error).message).toMatch(message);
}

describe('readGguf rejects damaged files with a clear error', () => {
  it('rejects every truncation of a valid file before the end of its data, naming the file', async () => {
    expect(dataEnd).toBeLessThan(good.length);
    for (let len = 0; len < dataEnd; len++) {
      const { path, result } = await parse(good.subarray(0, len));
      const err = await result.then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!(err instanceof GgufFormatError) || !err.message.includes(path)) throw new Error(`truncation at ${len}: ${String(err)}`);
      if (len >= headerEnd) expect(err.message).toMatch(/extends past the end|truncated/);
    }
  });

  it('under random byte damage either rejects the file or reads exactly the damaged bytes', async () => {
    const rng = createRng(7);
    let rejected = 0;
    let accepted = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(good);
      const at = rng.int(0, headerEnd - 1);
      bytes[at] = rng.int(0, 255);
      if (i % 3 === 0) bytes[rng.int(0, headerEnd - 1)] = 0xff;
      if (bytes.equals(good)) continue;
      const { result } = await parse(bytes);
      const outcome = await result.then(
        (file) => ({ file }),
        (error: unknown) => ({ error }),
      );
      if ('error' in outcome) {
        if (!(outcome.error instanceof GgufFormatError)) throw new Error(`damage at ${at}: ${String(outcome.error)}`);
        rejected++;
        continue;
      }
      // Accepted: writing back what was read must give the damaged bytes again, so nothing the
      // damage touched was skipped, misread or silently repaired.
      const mismatch = await reencodingMismatch(outcome.file, bytes);
      expect(mismatch, `damage at ${at} was accepted but read differently`).toBeUndefined();
      accepted++;
    }
    // Both outcomes occur with this seed, so neither branch above is dead.
    expect(rejected).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(10);
  });

  it('the damage check itself sees a value read differently from its bytes', async () => {
    // A parse whose score differs from the file's bytes, as a reader that misread a float would give.
    const { result } = await parse(good);
    const file = await result;
    const misread = new Map(file.metadata);
    misread.set('tokenizer.ggml.scores', [0, 0, 0, -2]);
    expect(await reencodingMismatch({ ...file, metadata: misread }, good)).toMatch(/^byte \d+/);
    expect(await reencodingMismatch(file, good)).toBeUndefined();
  });

  const cases: [string, () => RawGguf, RegExp][] = [
    ['bad magic', () => new RawGguf().bytes(Buffer.from('GGML')).u32(3).u64(0).u64(0), /not a GGUF file: magic is 0x4c4d4747/],
    ['version 1', () => new RawGguf().header(0, 0, 1), /GGUF version 1 is not supported/],
    ['version 4', () => new RawGguf().header(0, 0, 4), /unsupported GGUF version 4/],
    ['big-endian', () => new RawGguf().header(0, 0, 0x03000000), /big-endian GGUF files are not supported/],
    ['huge n_kv', () => new RawGguf().header(0, 1n << 62n), /header claims 0 tensors and 4611686018427387904 metadata entries, more than the 24-byte file can hold/],
    ['huge n_tensors', () => new RawGguf().header(0xffffffffn, 0), /header claims 4294967295 tensors/],
    ['huge key length', () => new RawGguf().header(0, 1).u64(1n << 60n).u32(0).u32(0), /metadata key #0 claims 1152921504606846976 bytes, more than the 8 left/],
    ['huge string value', () => new RawGguf().header(0, 1).str('a.b').u32(8).u64(1n << 40n).u8(0), /metadata 'a\.b' claims 1099511627776 bytes/],
    ['huge array', () => new RawGguf().header(0, 1).str('a.b').u32(9).u32(6).u64(1n << 61n).u32(0), /metadata 'a\.b' claims 2305843009213693952 float32 elements/],
    ['huge string array', () => new RawGguf().header(0, 1).str('a.b').u32(9).u32(8).u64(1000).str('x'), /claims 1000 string elements, more than the 9 bytes left/],
    ['nested array', () => new RawGguf().header(0, 1).str('a.b').u32(9).u32(9).u64(0), /metadata 'a\.b' is a nested array/],
    ['unknown value type', () => new RawGguf().header(0, 1).str('a.b').u32(13).u32(0), /metadata 'a\.b' has unknown value type 13/],
    ['unknown array type', () => new RawGguf().header(0, 1).str('a.b').u32(9).u32(42).u64(0), /array of unknown value type 42/],
    ['bool byte 2', () => new RawGguf().header(0, 1).str('a.b').u32(7).u8(2), /metadata 'a\.b' is a bool with byte value 2/],
    ['empty key', () => new RawGguf().header(0, 1).str('').u32(4).u32(1), /metadata key #0 is empty/],
    ['duplicate key', () => new RawGguf().header(0, 2).kvU32('a.b', 1).kvU32('a.b', 2), /duplicate metadata key 'a\.b'/],
    ['invalid UTF-8', () => new RawGguf().header(0, 1).str('a.b').u32(8).str(Uint8Array.from([0xc3, 0x28])), /metadata 'a\.b' is not valid UTF-8/],
    ['int32 alignment', () => new RawGguf().header(0, 1).str('general.alignment').u32(5).i32(32), /general\.alignment must be uint32, found int32/],
    ['alignment 48', () => new RawGguf().header(0, 1).kvU32('general.alignment', 48), /general\.alignment 48 is not a power of two/],
    ['alignment 0', () => new RawGguf().header(0, 1).kvU32('general.alignment', 0), /general\.alignment 0 is not a power of two/],
    ['5 dims', () => new RawGguf().header(1, 0).tensorInfo('t', [1, 1, 1, 1, 1], 0, 0).padTo(32).u32(0), /tensor 't' has 5 dims/],
    ['0 dims', () => new RawGguf().header(1, 0).tensorInfo('t', [], 0, 0).padTo(32).u32(0), /tensor 't' has 0 dims/],
    ['removed type', () => new RawGguf().header(1, 0).tensorInfo('t', [32], 4, 0).padTo(32).bytes(new Uint8Array(32)), /tensor 't' has type id 4, a removed ggml type/],
    ['unknown type', () => new RawGguf().header(1, 0).tensorInfo('t', [32], 99, 0).padTo(32).bytes(new Uint8Array(32)), /tensor 't' has type id 99, an unknown ggml type/],
    ['partial block', () => new RawGguf().header(1, 0).tensorInfo('w', [48, 2], 8, 0).padTo(32).bytes(new Uint8Array(128)), /tensor 'w' \(Q8_0\): ne\[0\]=48 is not a multiple of the Q8_0 block size 32/],
    ['negative dim', () => new RawGguf().header(1, 0).tensorInfo('t', [1n << 63n], 0, 0).padTo(32), /tensor 't' has negative ne\[0\]/],
    ['overflowing dims', () => new RawGguf().header(1, 0).tensorInfo('t', [1n << 40n, 1n << 40n], 0, 0).padTo(32), /tensor 't' element count overflows int64/],
    ['huge tensor', () => new RawGguf().header(1, 0).tensorInfo('t', [1n << 40n], 0, 0).padTo(32), /tensor 't' needs 4398046511104 bytes, more than the whole file/],
    ['long tensor name', () => new RawGguf().header(1, 0).tensorInfo('n'.repeat(64), [1], 0, 0).padTo(32).f32(0), /name is longer than 63 bytes/],
    ['duplicate tensor', () => new RawGguf().header(2, 0).tensorInfo('t', [1], 0, 0).tensorInfo('t', [1], 0, 32).padTo(32).bytes(new Uint8Array(36)), /duplicate tensor name 't'/],
    ['misaligned offset', () => new RawGguf().header(1, 0).tensorInfo('t', [1], 0, 4).padTo(32).bytes(new Uint8Array(8)), /tensor 't' has offset 4, not a multiple of the alignment 32/],
    ['gap between tensors', () => new RawGguf().header(2, 0).tensorInfo('a', [1], 0, 0).tensorInfo('b', [1], 0, 64).padTo(32).bytes(new Uint8Array(68)), /tensor 'b' has offset 64, expected 32/],
    ['out-of-order tensors', () => new RawGguf().header(2, 0).tensorInfo('a', [1], 0, 32).tensorInfo('b', [1], 0, 0).padTo(32).bytes(new Uint8Array(36)), /tensor 'a' has offset 32, expected 0/],
    ['data past the end', () => new RawGguf().header(1, 0).tensorInfo('t', [64], 0, 0).padTo(32).bytes(new Uint8Array(255)), /tensor 't' data \[\d+, \d+\) extends past the end of the \d+-byte file/],
  ];
  for (const [label, build, message] of cases) {
    it(`rejects ${label}`, async () => {
      await rejects(build().build(), message);
    });
  }

  it('accepts a file cut inside the padding after its last tensor (MLX writes none)', async () => {
    const { result } = await parse(good.subarray(0, dataEnd));
    await expect(result).resolves.toMatchObject({ tensors: [{ name: 'a' }, { name: 'b', nbytes: 12 }] });
  });

  it('accepts a file whose last tensor has no trailing padding', async () => {
    const { result } = await parse(new RawGguf().header(1, 0).tensorInfo('t', [3], 0, 0).padTo(32).f32(1).f32(2).f32(3).build());
    await expect(result).resolves.toMatchObject({ tensors: [{ name: 't', nbytes: 12 }] });
  });
});
