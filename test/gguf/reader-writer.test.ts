import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes, readTensorFloat32 } from '../../lib/gguf/tensor-data.js';
import { writeGguf, type GgufTensorInput } from '../../lib/gguf/writer.js';
import type { GgufMetadataInput } from '../../lib/gguf/metadata-encoding.js';
import { requireInteger, requireNumberArray, requireString, optionalBoolean } from '../../lib/gguf/metadata.js';
import { createRng } from '../fixtures/rng.js';
import { RawGguf } from './raw-gguf.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gguf-rw-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = createRng(seed);
  return Uint8Array.from({ length: n }, () => rng.int(0, 255));
}

const METADATA: [string, GgufMetadataInput][] = [
  ['general.architecture', 'llama'],
  ['general.name', 'tiny ünïcode ✓ 🦙'],
  ['llama.rope.freq_base', 1000000],
  ['llama.attention.layer_norm_rms_epsilon', 1e-5],
  ['llama.block_count', 2],
  ['tokenizer.ggml.token_type', [1, 2, 3, 6]],
  ['tokenizer.ggml.tokens', ['<unk>', '▁hi', '', '<0x0A>']],
  ['tokenizer.ggml.add_bos_token', true],
  ['t.u8', { type: 'uint8', value: 255 }],
  ['t.i8', { type: 'int8', value: -128 }],
  ['t.u16', { type: 'uint16', value: 65535 }],
  ['t.i16', { type: 'int16', value: -32768 }],
  ['t.u32', { type: 'uint32', value: 4294967295 }],
  ['t.i32', { type: 'int32', value: -2147483648 }],
  ['t.f32', { type: 'float32', value: -0.15625 }],
  ['t.f64', { type: 'float64', value: Math.PI }],
  ['t.u64', 18446744073709551615n],
  ['t.i64', -9223372036854775808n],
  ['t.bool', false],
  ['t.str_empty', ''],
  ['t.arr_f64', { type: 'float64[]', value: [0.1, -1e300] }],
  ['t.arr_i64', { type: 'int64[]', value: [-1n, 5n] }],
  ['t.arr_bool', [true, false, true]],
  ['t.arr_empty', { type: 'uint16[]', value: [] }],
  ['t.arr_inferred_i32', [-1, 7]],
  ['t.arr_inferred_f32', [0.5, 2]],
  ['t.u64_from_number', { type: 'uint64', value: 7 }],
];

function tensors(): GgufTensorInput[] {
  return [
    { name: 'a.f32', shape: [2, 3], type: 'F32', data: new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer) },
    { name: 'b.f16.1d', shape: [5], type: 'F16', data: randomBytes(10, 1) },
    { name: 'c.q8_0', shape: [3, 64], type: 'Q8_0', data: randomBytes(3 * 2 * 34, 2) },
    { name: 'd.q4_k.4d', ne: [256, 1, 2, 1], type: 'Q4_K', data: randomBytes(2 * 144, 3) },
    { name: 'e.iq4_nl.raw', shape: [32], type: 'IQ4_NL', data: randomBytes(18, 4) },
    { name: 'f.empty', shape: [0, 32], type: 'Q4_0', data: new Uint8Array(0) },
    {
      name: 'g.streamed.bf16',
      shape: [7, 11],
      type: 'BF16',
      data: async function* () {
        const all = randomBytes(154, 5);
        for (let i = 0; i < all.length; i += 13) yield all.subarray(i, i + 13);
      },
    },
  ];
}

describe('writeGguf → readGguf', () => {
  it('round-trips every value type, tensor type and shape bit-exactly', async () => {
    const path = join(dir, 'round.gguf');
    const written = await writeGguf(path, { metadata: new Map(METADATA), tensors: tensors() });
    const f = await readGguf(path);
    expect(f.version).toBe(3);
    expect(f.alignment).toBe(32);
    expect(f.dataOffset).toBe(written.dataOffset);
    expect(f.dataOffset % 32).toBe(0);
    expect(f.fileSize).toBe(written.size);

    expect([...f.metadata.keys()]).toEqual(METADATA.map(([k]) => k));
    expect(Object.fromEntries(f.metadataTypes)).toEqual({
      'general.architecture': 'string',
      'general.name': 'string',
      'llama.rope.freq_base': 'float32',
      'llama.attention.layer_norm_rms_epsilon': 'float32',
      'llama.block_count': 'uint32',
      'tokenizer.ggml.token_type': 'int32[]',
      'tokenizer.ggml.tokens': 'string[]',
      'tokenizer.ggml.add_bos_token': 'bool',
      't.u8': 'uint8',
      't.i8': 'int8',
      't.u16': 'uint16',
      't.i16': 'int16',
      't.u32': 'uint32',
      't.i32': 'int32',
      't.f32': 'float32',
      't.f64': 'float64',
      't.u64': 'uint64',
      't.i64': 'int64',
      't.bool': 'bool',
      't.str_empty': 'string',
      't.arr_f64': 'float64[]',
      't.arr_i64': 'int64[]',
      't.arr_bool': 'bool[]',
      't.arr_empty': 'uint16[]',
      't.arr_inferred_i32': 'int32[]',
      't.arr_inferred_f32': 'float32[]',
      't.u64_from_number': 'uint64',
    });
    const m = Object.fromEntries(f.metadata);
    expect(m['general.name']).toBe('tiny ünïcode ✓ 🦙');
    expect(m['llama.rope.freq_base']).toBe(1000000);
    expect(m['llama.attention.layer_norm_rms_epsilon']).toBe(Math.fround(1e-5));
    expect(m['t.f64']).toBe(Math.PI);
    expect(m['t.u64']).toBe(18446744073709551615n);
    expect(m['t.i64']).toBe(-9223372036854775808n);
    expect(m['t.u64_from_number']).toBe(7n);
    expect(m['t.arr_f64']).toEqual([0.1, -1e300]);
    expect(m['t.arr_i64']).toEqual([-1n, 5n]);
    expect(m['tokenizer.ggml.tokens']).toEqual(['<unk>', '▁hi', '', '<0x0A>']);
    expect(m['t.arr_empty']).toEqual([]);

    const input = tensors();
    expect(f.tensors.map((t) => [t.name, t.typeName, [...t.ne], [...t.shape], t.nbytes])).toEqual([
      ['a.f32', 'F32', [3, 2], [2, 3], 24],
      ['b.f16.1d', 'F16', [5], [5], 10],
      ['c.q8_0', 'Q8_0', [64, 3], [3, 64], 204],
      ['d.q4_k.4d', 'Q4_K', [256, 1, 2, 1], [1, 2, 1, 256], 288],
      ['e.iq4_nl.raw', 'IQ4_NL', [32], [32], 18],
      ['f.empty', 'Q4_0', [32, 0], [0, 32], 0],
      ['g.streamed.bf16', 'BF16', [11, 7], [7, 11], 154],
    ]);
    let expectedOffset = f.dataOffset;
    for (const [i, t] of f.tensors.entries()) {
      expect(t.offset).toBe(expectedOffset);
      expect(t.offset).toBe(written.tensors[i]?.offset);
      expectedOffset += Math.ceil(t.nbytes / 32) * 32;
      const want = input[i]?.data;
      const bytes = await readTensorBytes(f, t);
      if (want instanceof Uint8Array) expect(Buffer.from(bytes).equals(Buffer.from(want))).toBe(true);
      else expect(Buffer.from(bytes).equals(Buffer.from(randomBytes(154, 5)))).toBe(true);
    }
    // ggml pads after the last tensor too.
    expect(f.fileSize).toBe(expectedOffset);
    expect([...(await readTensorFloat32(f, 'a.f32'))]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('rewriting what was read (with the stored types) reproduces the file byte for byte', async () => {
    const first = join(dir, 'first.gguf');
    const second = join(dir, 'second.gguf');
    await writeGguf(first, { metadata: new Map(METADATA), tensors: tensors() });
    const f = await readGguf(first);
    await writeGguf(second, {
      metadata: new Map([...f.metadata].map(([k, value]) => [k, { type: f.metadataTypes.get(k) ?? 'string', value }])),
      tensors: await Promise.all(f.tensors.map(async (t) => ({ name: t.name, ne: t.ne, type: t.ggmlType, data: await readTensorBytes(f, t) }))),
    });
    expect((await readFile(second)).equals(await readFile(first))).toBe(true);
  });

  it('round-trips metadata far larger than the write buffer and the read window', async () => {
    const path = join(dir, 'big-metadata.gguf');
    const rng = createRng(11);
    const tokens = Array.from({ length: 150_000 }, (_, i) => `▁tok${i}${'x'.repeat(rng.int(0, 20))}`);
    const scores = Array.from({ length: 300_000 }, () => Math.fround(rng.normal()));
    const ids = Array.from({ length: 70_000 }, (_, i) => BigInt(i) * 1_000_000_007n);
    await writeGguf(path, {
      metadata: { 'tokenizer.ggml.tokens': tokens, 'tokenizer.ggml.scores': scores, 'x.ids': { type: 'uint64[]', value: ids }, 'x.after': 'end' },
      tensors: [{ name: 't', shape: [1], type: 'F32', data: new Uint8Array(new Float32Array([9]).buffer) }],
    });
    const f = await readGguf(path);
    expect(f.dataOffset).toBeGreaterThan(3 << 20);
    expect(f.metadata.get('tokenizer.ggml.tokens')).toEqual(tokens);
    expect(f.metadata.get('tokenizer.ggml.scores')).toEqual(scores);
    expect(f.metadata.get('x.ids')).toEqual(ids);
    expect(f.metadata.get('x.after')).toBe('end');
    expect([...(await readTensorFloat32(f, 't'))]).toEqual([9]);
  });

  it('lays out the header exactly as the spec says', async () => {
    const path = join(dir, 'layout.gguf');
    await writeGguf(path, {
      metadata: { 'general.architecture': 'llama' },
      tensors: [{ name: 'w', shape: [1], type: 'F32', data: new Uint8Array(new Float32Array([2.5]).buffer) }],
    });
    const want = new RawGguf().header(1, 1).kvStr('general.architecture', 'llama').tensorInfo('w', [1], 0, 0).padTo(32).f32(2.5).padTo(32).build();
    expect((await readFile(path)).equals(want)).toBe(true);
  });

  it('honours a custom alignment and records it as uint32 general.alignment', async () => {
    const path = join(dir, 'align64.gguf');
    await writeGguf(path, { alignment: 64, tensors: tensors().slice(0, 3) });
    const f = await readGguf(path);
    expect(f.alignment).toBe(64);
    expect(f.metadataTypes.get('general.alignment')).toBe('uint32');
    expect(f.tensors.every((t) => (t.offset - f.dataOffset) % 64 === 0 && t.offset % 64 === 0)).toBe(true);
    expect(f.tensors.map((t) => t.relativeOffset)).toEqual([0, 64, 128]);
  });

  it('gives llama.cpp the types it requires for well-known keys, and explicit types win', async () => {
    const path = join(dir, 'known.gguf');
    await writeGguf(path, {
      metadata: {
        'llama.context_length': 4096,
        'llama.rope.freq_base': 10000,
        'adapter.lora.alpha': 16,
        'tokenizer.ggml.eos_token_id': 2,
        'tokenizer.ggml.scores': [0, -1, -2],
        'general.file_type': 1,
        'x.override': { type: 'int16', value: 3 },
      },
    });
    const f = await readGguf(path);
    expect(Object.fromEntries(f.metadataTypes)).toEqual({
      'llama.context_length': 'uint32',
      'llama.rope.freq_base': 'float32',
      'adapter.lora.alpha': 'float32',
      'tokenizer.ggml.eos_token_id': 'uint32',
      'tokenizer.ggml.scores': 'float32[]',
      'general.file_type': 'uint32',
      'x.override': 'int16',
    });
    expect(f.tensors).toEqual([]);
    expect(requireInteger(f, 'llama.context_length')).toBe(4096);
    expect(requireNumberArray(f, 'tokenizer.ggml.scores')).toEqual([0, -1, -2]);
    expect(() => requireString(f, 'llama.context_length')).toThrow(/metadata 'llama.context_length' is uint32, expected string/);
    expect(() => requireInteger(f, 'llama.rope.freq_base')).toThrow(/is float32, expected an integer/);
    expect(() => requireString(f, 'general.architecture')).toThrow(/is missing/);
    expect(optionalBoolean(f, 'nope')).toBeUndefined();
  });
});

describe('writeGguf validation and atomicity', () => {
  const bad: [string, Parameters<typeof writeGguf>[1], RegExp][] = [
    ['duplicate tensor', { tensors: [{ name: 'x', shape: [1], type: 'F32', data: new Uint8Array(4) }, { name: 'x', shape: [1], type: 'F32', data: new Uint8Array(4) }] }, /duplicate GGUF tensor 'x'/],
    ['long name', { tensors: [{ name: 'n'.repeat(64), shape: [1], type: 'F32', data: new Uint8Array(4) }] }, /name must be 1\.\.63 bytes/],
    ['partial block', { tensors: [{ name: 'q', shape: [2, 48], type: 'Q8_0', data: new Uint8Array(102) }] }, /'q' \(Q8_0\): ne\[0\]=48 is not a multiple of the Q8_0 block size 32/],
    ['wrong data length', { tensors: [{ name: 'f', shape: [2, 2], type: 'F16', data: new Uint8Array(6) }] }, /'f': data is 6 bytes, but F16 ne \[2, 2\] needs 8/],
    ['five dims', { tensors: [{ name: 'f', shape: [1, 1, 1, 1, 1], type: 'F32', data: new Uint8Array(4) }] }, /5 dims/],
    ['shape and ne', { tensors: [{ name: 'f', shape: [1], ne: [1], type: 'F32', data: new Uint8Array(4) }] }, /exactly one of shape and ne/],
    ['removed type', { tensors: [{ name: 'f', shape: [32], type: 4, data: new Uint8Array(20) }] }, /'f': ggml type 4 is a removed type/],
    ['alignment 48', { alignment: 48 }, /alignment 48 is not a power of two/],
    ['int32 alignment', { metadata: { 'general.alignment': { type: 'int32', value: 32 } } }, /must be uint32/],
    ['uint8 overflow', { metadata: { 'x.y': { type: 'uint8', value: 256 } } }, /'x\.y' \(uint8\): 256 is not an integer in \[0, 255\]/],
    ['array element type', { metadata: { 'x.y': { type: 'int8[]', value: [1, 'a'] } } }, /'x\.y\[1\]' \(int8\): expected an integer, got string/],
    ['untyped empty array', { metadata: { 'x.y': [] } }, /empty array: give its type/],
    ['untyped huge integer', { metadata: { 'x.y': 2 ** 40 } }, /outside int32\/uint32/],
    ['known key wrong kind', { metadata: { 'llama.block_count': 'two' } }, /'llama\.block_count' \(uint32\): expected an integer, got string/],
    ['unknown value type', { metadata: { 'x.y': { type: 'float16' as 'float32', value: 1 } } }, /unknown type "float16"/],
    ['lone surrogate', { metadata: { 'x.y': 'a\ud800b' } }, /lone surrogate/],
  ];
  for (const [label, options, message] of bad) {
    it(`rejects ${label} before touching the disk`, async () => {
      const path = join(dir, `bad-${label.replace(/\W/g, '_')}.gguf`);
      await expect(writeGguf(path, options)).rejects.toThrow(message);
      expect(await readdir(dir)).not.toContain(`bad-${label.replace(/\W/g, '_')}.gguf`);
    });
  }

  it('leaves an existing file untouched and no temp file when a stream fails or runs short', async () => {
    const sub = await mkdtemp(join(dir, 'atomic-'));
    const path = join(sub, 'model.gguf');
    await writeFile(path, 'previous good file');
    const failing = async function* (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(8);
      throw new Error('source broke');
    };
    await expect(writeGguf(path, { tensors: [{ name: 'w', shape: [4], type: 'F32', data: failing }] })).rejects.toThrow('source broke');
    const short = async function* (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(12);
    };
    await expect(writeGguf(path, { tensors: [{ name: 'w', shape: [4], type: 'F32', data: short }] })).rejects.toThrow(/tensor 'w' stream gave 12 bytes, expected 16/);
    const long = async function* (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(12);
      yield new Uint8Array(12);
    };
    await expect(writeGguf(path, { tensors: [{ name: 'w', shape: [4], type: 'F32', data: long }] })).rejects.toThrow(/more than the 16 bytes/);
    expect(await readFile(path, 'utf8')).toBe('previous good file');
    expect(await readdir(sub)).toEqual(['model.gguf']);

    await writeGguf(path, { tensors: [{ name: 'w', shape: [4], type: 'F32', data: new Uint8Array(16) }] });
    expect((await readGguf(path)).tensors[0]?.name).toBe('w');
    expect(await readdir(sub)).toEqual(['model.gguf']);
  });

  it('streams a tensor larger than its write buffer', async () => {
    const path = join(dir, 'big.gguf');
    const chunk = randomBytes(1 << 20, 9);
    const chunks = 6;
    await writeGguf(path, {
      tensors: [
        {
          name: 'big',
          shape: [chunks << 18],
          type: 'F32',
          data: async function* () {
            for (let i = 0; i < chunks; i++) yield chunk;
          },
        },
      ],
    });
    const f = await readGguf(path);
    const t = f.tensors[0];
    expect(t?.nbytes).toBe(chunks << 20);
    const bytes = await readTensorBytes(f, 'big');
    for (let i = 0; i < chunks; i++) expect(Buffer.from(bytes.subarray(i << 20, (i + 1) << 20)).equals(Buffer.from(chunk))).toBe(true);
  });
});

describe('readGguf version 2', () => {
  it('reads a v2 file, which shares the v3 layout', async () => {
    const path = join(dir, 'v2.gguf');
    const raw = new RawGguf().header(1, 2, 2).kvStr('general.architecture', 'llama').kvU32('llama.block_count', 3).tensorInfo('t', [2], 0, 0).padTo(32).f32(1).f32(-1);
    await writeFile(path, raw.build());
    const f = await readGguf(path);
    expect(f.version).toBe(2);
    expect(f.metadata.get('llama.block_count')).toBe(3);
    expect([...(await readTensorFloat32(f, 't'))]).toEqual([1, -1]);
  });
});
