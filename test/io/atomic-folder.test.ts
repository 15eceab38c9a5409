import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { recoverFolder, writeFolderAtomically } from '../../lib/io/atomic-folder.js';
import { tempDirs } from '../train/fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-folder-');

const writers = (tag: string) => ['a.json', 'b.bin'].map((name) => ({ name, write: (file: string) => writeFile(file, `${name}:${tag}`) }));

describe('writeFolderAtomically', () => {
  it('replaces the whole folder: no file of the old one survives', async () => {
    const parent = await makeTempDir();
    await mkdir(path.join(parent, 'adapter'));
    await writeFile(path.join(parent, 'adapter', 'stale.txt'), 'old');
    await writeFile(path.join(parent, 'adapter', 'a.json'), 'old');
    expect(await writeFolderAtomically(parent, 'adapter', writers('new'))).toBe(path.join(parent, 'adapter'));
    expect((await readdir(path.join(parent, 'adapter'))).sort()).toEqual(['a.json', 'b.bin']);
    expect(await readFile(path.join(parent, 'adapter', 'a.json'), 'utf8')).toBe('a.json:new');
    expect(await readdir(parent)).toEqual(['adapter']);
  });

  it('leaves the old folder as it was when a writer fails', async () => {
    const parent = await makeTempDir();
    await writeFolderAtomically(parent, 'adapter', writers('v1'));
    const failing = [...writers('v2'), { name: 'c.bin', write: () => Promise.reject(new Error('disk full')) }];
    await expect(writeFolderAtomically(parent, 'adapter', failing)).rejects.toThrow('disk full');
    expect(await readFile(path.join(parent, 'adapter', 'a.json'), 'utf8')).toBe('a.json:v1');
    expect(await readdir(parent)).toEqual(['adapter']);
  });
});

describe('recoverFolder', () => {
  it('puts the old folder back after a crash between the two renames, and removes temp folders', async () => {
    const parent = await makeTempDir();
    await mkdir(path.join(parent, '.trash-adapter-0a1b2c3d'));
    await writeFile(path.join(parent, '.trash-adapter-0a1b2c3d', 'a.json'), 'old');
    await mkdir(path.join(parent, '.tmp-adapter-99887766'));
    await mkdir(path.join(parent, 'checkpoints'));
    await recoverFolder(parent, 'adapter');
    expect((await readdir(parent)).sort()).toEqual(['adapter', 'checkpoints']);
    expect(await readFile(path.join(parent, 'adapter', 'a.json'), 'utf8')).toBe('old');
  });

  it('drops the old folder when the new one made it into place', async () => {
    const parent = await makeTempDir();
    await writeFolderAtomically(parent, 'adapter', writers('new'));
    await mkdir(path.join(parent, '.trash-adapter-0a1b2c3d'));
    await recoverFolder(parent, 'adapter');
    expect(await readdir(parent)).toEqual(['adapter']);
    expect(await readFile(path.join(parent, 'adapter', 'b.bin'), 'utf8')).toBe('b.bin:new');
  });
});
