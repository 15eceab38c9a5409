import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AtomicFile, writeFileAtomic } from '../../lib/io/atomic-file.js';
import { tempDir } from '../helpers/temp-dir.js';

/** FileHandle is not exported; its prototype comes from a live handle. */
async function fileHandlePrototype(dir: string): Promise<{ sync: () => Promise<void>; datasync: () => Promise<void> }> {
  const handle = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(handle) as { sync: () => Promise<void>; datasync: () => Promise<void> };
  await handle.close();
  return proto;
}

afterEach(() => vi.restoreAllMocks());

describe('atomic file writes', () => {
  it('replaces a file whole, syncing the file and then its folder', async () => {
    const dir = tempDir('atomic-');
    const target = join(dir, 'out.json');
    await writeFile(target, 'old');
    const proto = await fileHandlePrototype(dir);
    const sync = vi.spyOn(proto, 'sync');
    await writeFileAtomic(target, 'new content');
    expect(await readFile(target, 'utf8')).toBe('new content');
    // Once for the temp file before the rename, once for the folder after it.
    expect(sync).toHaveBeenCalledTimes(2);
    expect((await readdir(dir)).sort()).toEqual(['out.json', 'probe']);
  });

  it('streams large writes past its buffer and pads with zeros', async () => {
    const dir = tempDir('atomic-');
    const target = join(dir, 'big.bin');
    const file = await AtomicFile.create(target);
    const big = new Uint8Array(5 << 20).map((_, i) => i % 251);
    await file.write(new Uint8Array([1, 2, 3]));
    await file.write(big);
    await file.zeros(7);
    expect(file.written).toBe(3 + big.length + 7);
    await file.commit();
    const back = await readFile(target);
    expect(back.length).toBe(3 + big.length + 7);
    expect(Buffer.compare(back.subarray(3, 3 + big.length), Buffer.from(big))).toBe(0);
    expect([...back.subarray(back.length - 7)]).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });

  it('leaves the existing file intact and no temp file when writing fails', async () => {
    const dir = tempDir('atomic-');
    const target = join(dir, 'model.gguf');
    await writeFile(target, 'the good one');
    const file = await AtomicFile.create(target);
    await file.write(new Uint8Array(100));
    expect((await readdir(dir)).some((f) => f.startsWith('.tmp-model.gguf-'))).toBe(true);
    await file.abort();
    expect(await readFile(target, 'utf8')).toBe('the good one');
    expect(await readdir(dir)).toEqual(['model.gguf']);
  });

  it('removes the temp file when the sync before the rename fails (a full disk reports there)', async () => {
    const dir = tempDir('atomic-');
    const target = join(dir, 'a.txt');
    await writeFile(target, 'kept');
    const proto = await fileHandlePrototype(dir);
    vi.spyOn(proto, 'sync').mockRejectedValueOnce(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    await expect(writeFileAtomic(target, 'lost')).rejects.toThrow(/ENOSPC/);
    expect(await readFile(target, 'utf8')).toBe('kept');
    expect((await readdir(dir)).sort()).toEqual(['a.txt', 'probe']);
  });

  it('flushes a large file in the background as it grows, and the whole file arrives', async () => {
    const dir = tempDir('atomic-');
    const proto = await fileHandlePrototype(dir);
    const datasync = vi.spyOn(proto, 'datasync');
    const file = await AtomicFile.create(join(dir, 'big.bin'));
    const chunk = new Uint8Array(3 << 20);
    const chunks = 200;
    for (let i = 0; i < chunks; i++) {
      chunk.fill(i & 0xff);
      await file.write(chunk);
    }
    await file.commit();
    // 600 MiB: at least one flush at each 256 MiB boundary that found none in flight.
    expect(datasync.mock.calls.length).toBeGreaterThanOrEqual(1);
    const handle = await open(join(dir, 'big.bin'), 'r');
    try {
      expect((await handle.stat()).size).toBe(chunks * chunk.length);
      const probe = new Uint8Array(1);
      for (const i of [0, 77, 150, 199]) {
        await handle.read(probe, 0, 1, i * chunk.length + 123);
        expect(probe[0]).toBe(i & 0xff);
      }
    } finally {
      await handle.close();
    }
  });

  it('a failed background flush fails the commit and leaves the old file', async () => {
    const dir = tempDir('atomic-');
    const target = join(dir, 'model.gguf');
    await writeFile(target, 'the good one');
    const proto = await fileHandlePrototype(dir);
    vi.spyOn(proto, 'datasync').mockRejectedValue(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const file = await AtomicFile.create(target);
    const chunk = new Uint8Array(8 << 20);
    for (let i = 0; i < 40; i++) await file.write(chunk);
    await expect(file.commit()).rejects.toThrow(/EIO/);
    await file.abort();
    expect(await readFile(target, 'utf8')).toBe('the good one');
    expect((await readdir(dir)).sort()).toEqual(['model.gguf', 'probe']);
  });

  it('refuses to reuse a temp name', async () => {
    const dir = tempDir('atomic-');
    const a = await AtomicFile.create(join(dir, 'x'));
    const b = await AtomicFile.create(join(dir, 'x'));
    expect(a.tempPath).not.toBe(b.tempPath);
    await a.abort();
    await b.abort();
  });
});
