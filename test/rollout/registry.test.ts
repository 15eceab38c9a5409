import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRegistry } from '../../lib/rollout/registry.js';
import { tempDir } from '../helpers/temp-dir.js';

const sha = 'a'.repeat(64);

describe('version registry', () => {
  it('records versions with lineage, exports and status changes', async () => {
    const root = tempDir('registry-');
    const reg = openRegistry(root);
    await reg.add({ name: 'iceburg-dolphin-mistral-v1', parent: null, created: '2026-11-01T00:00:00Z', base_model: 'dolphin-mistral:7b', exports: [{ path: 'v1.gguf', sha256: sha, type: 'q4_k_m', bytes: 10 }] });
    await reg.promote('iceburg-dolphin-mistral-v1');
    await reg.add({ name: 'iceburg-dolphin-mistral-v2', parent: 'iceburg-dolphin-mistral-v1', created: '2026-12-01T00:00:00Z', config_hash: 'c', data_manifest_hash: 'd' });
    await reg.update('iceburg-dolphin-mistral-v2', { eval: { loss: 1.2 }, ollama: 'iceburg-dolphin-mistral-v2' });
    expect((await reg.get('iceburg-dolphin-mistral-v2')).status).toBe('candidate');
    await reg.promote('iceburg-dolphin-mistral-v2');
    const versions = await reg.list();
    expect(versions.map((v) => [v.name, v.status])).toEqual([
      ['iceburg-dolphin-mistral-v1', 'previous'],
      ['iceburg-dolphin-mistral-v2', 'current'],
    ]);
    expect((await reg.current())?.eval).toEqual({ loss: 1.2 });
    await reg.retire('iceburg-dolphin-mistral-v1');
    await expect(reg.retire('iceburg-dolphin-mistral-v2')).rejects.toThrow(/is current/);
    await expect(reg.promote('iceburg-dolphin-mistral-v1')).rejects.toThrow(/retired/);
    // The file is plain JSON a person can read.
    const json = JSON.parse(await readFile(reg.file, 'utf8')) as { versions: { name: string }[] };
    expect(json.versions).toHaveLength(2);
  });

  it('refuses duplicates, unknown parents and names, and a damaged file by name', async () => {
    const root = tempDir('registry-');
    const reg = openRegistry(root);
    await reg.add({ name: 'v1', parent: null, created: 't' });
    await expect(reg.add({ name: 'v1', parent: null, created: 't' })).rejects.toThrow(/already exists/);
    await expect(reg.add({ name: 'v2', parent: 'v0', created: 't' })).rejects.toThrow(/no version named v0/);
    await expect(reg.get('nope')).rejects.toThrow(/no version named nope \(known: v1\)/);
    await writeFile(reg.file, '{"format":1,"versions":[{"name":"x"}]}');
    await expect(reg.list()).rejects.toThrow(/versions\.json: versions\.0\.parent/);
  });

  it('loses no version when several processes add at once', async () => {
    const root = tempDir('registry-');
    const script = `
      const { openRegistry } = await import(${JSON.stringify(join(import.meta.dirname, '..', '..', 'lib', 'rollout', 'registry.ts'))});
      const reg = openRegistry(process.argv[1]);
      for (let i = 0; i < 12; i++) {
        for (;;) {
          try { await reg.add({ name: 'w' + process.argv[2] + '-' + i, parent: null, created: 't' }); break; }
          catch (e) { if (!/being changed/.test(e.message)) throw e; await new Promise((r) => setTimeout(r, 5)); }
        }
      }`;
    const runs = ['a', 'b', 'c', 'd'].map(
      (id) =>
        new Promise<number>((resolve) => {
          const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, root, id], { stdio: 'inherit' });
          child.on('exit', (code) => resolve(code ?? 1));
        }),
    );
    expect(await Promise.all(runs)).toEqual([0, 0, 0, 0]);
    const names = (await openRegistry(root).list()).map((v) => v.name).sort();
    expect(names).toHaveLength(48);
  });
});
