import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AtomicFile, writeFileAtomic } from '../../lib/io/atomic-file.js';
import { tempDir } from '../helpers/temp-dir.js';

/** FileHandle is not exported; its prototype comes from a live handle. */
async function fileHandlePrototype(dir: string): Promise<{ sync: () => Promise<void> }> {
  const handle = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(handle) as { sync: () => Promise<void> };
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

  it('refuses to reuse a temp name', async () => {
    const dir = tempDir('atomic-');
    const a = await AtomicFile.create(join(dir, 'x'));
    const b = await AtomicFile.create(join(dir, 'x'));
    expect(a.tempPath).not.toBe(b.tempPath);
    await a.abort();
    await b.abort();
  });
});
