/** --init-adapter names: a folder as given, a version name through the registry's adapter path. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRegistry } from '../../lib/rollout/registry.js';
import { resolveInitAdapter, trainConfigForCli } from '../../lib/rollout/retrain-adapter.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('resolveInitAdapter', () => {
  it('resolves a version name to its recorded adapter, relative to the registry root', async () => {
    const root = tempDir('init-resolve-');
    mkdirSync(join(root, 'runs', 'v1', 'adapter'), { recursive: true });
    const registry = openRegistry(root);
    await registry.add({ name: 'iceburg-v1', parent: null, created: '2026-11-01T00:00:00Z', adapter: 'runs/v1/adapter' });
    await registry.add({ name: 'iceburg-v2', parent: 'iceburg-v1', created: '2026-12-01T00:00:00Z' });
    expect(await resolveInitAdapter('iceburg-v1', root)).toBe(join(root, 'runs', 'v1', 'adapter'));
    expect(await resolveInitAdapter(join(root, 'runs', 'v1', 'adapter'), '/nonexistent')).toBe(join(root, 'runs', 'v1', 'adapter'));
    await expect(resolveInitAdapter('iceburg-v2', root)).rejects.toThrow(/iceburg-v2 .*records no adapter folder/);
    await expect(resolveInitAdapter('iceburg-v9', root)).rejects.toThrow(/--init-adapter iceburg-v9: not a folder, and not a version in .*no version named iceburg-v9/);
  });

  it('gives train the config file alone, or the config starting from the adapter the flag or the file names', async () => {
    const root = tempDir('init-config-');
    mkdirSync(join(root, 'a'));
    mkdirSync(join(root, 'conf', 'b'), { recursive: true });
    const plain = join(root, 'conf', 'plain.yaml');
    writeFileSync(plain, 'model: ./m\ndata: { train: ./d }\nlora: { rank: 4 }\noutput: ./out\n');
    const byFolder = join(root, 'conf', 'folder.yaml');
    writeFileSync(byFolder, 'model: ./m\ndata: { train: ./d }\nlora: { rank: 4, init_adapter: ./b }\noutput: ./out\n');
    const byVersion = join(root, 'conf', 'version.yaml');
    writeFileSync(byVersion, 'model: ./m\ndata: { train: ./d }\nlora: { rank: 4, init_adapter: v1 }\noutput: ./out\n');
    await openRegistry(root).add({ name: 'v1', parent: null, created: '2026-11-01T00:00:00Z', adapter: join(root, 'a') });
    expect(await trainConfigForCli(plain, undefined, root)).toBe(plain);
    const flagged = await trainConfigForCli(plain, 'v1', root);
    expect(typeof flagged !== 'string' && flagged.lora).toMatchObject({ rank: 4, init_adapter: join(root, 'a') });
    expect(typeof flagged !== 'string' && flagged.output).toBe(join(root, 'conf', 'out'));
    const folder = await trainConfigForCli(byFolder, undefined, '/nonexistent');
    expect(typeof folder !== 'string' && folder.lora.init_adapter).toBe(join(root, 'conf', 'b'));
    const version = await trainConfigForCli(byVersion, undefined, root);
    expect(typeof version !== 'string' && version.lora.init_adapter).toBe(join(root, 'a'));
  });
});
