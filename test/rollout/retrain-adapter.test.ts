/** --init-adapter names: a folder as given, a version name through the registry's adapter path. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRegistry } from '../../lib/rollout/registry.js';
import { configWithInitAdapter, resolveInitAdapter } from '../../lib/rollout/retrain-adapter.js';
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

  it('puts the resolved folder into the config as lora.init_adapter', async () => {
    const root = tempDir('init-config-');
    mkdirSync(join(root, 'a'));
    const config = join(root, 'train.yaml');
    writeFileSync(config, 'model: ./m\ndata: { train: ./d }\nlora: { rank: 4 }\noutput: ./out\n');
    await openRegistry(root).add({ name: 'v1', parent: null, created: '2026-11-01T00:00:00Z', adapter: join(root, 'a') });
    const c = await configWithInitAdapter(config, 'v1', root);
    expect(c.lora).toMatchObject({ rank: 4, init_adapter: join(root, 'a') });
    expect(c.output).toBe(join(root, 'out'));
  });
});
