import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRegistry } from '../../lib/rollout/registry.js';
import { tempDir } from '../helpers/temp-dir.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });

describe('mlx-qlora models', () => {
  it('lists, shows, promotes and retires versions', async () => {
    const root = tempDir('models-cli-');
    const reg = openRegistry(root);
    await reg.add({ name: 'iceburg-v1', parent: null, created: '2026-11-01T00:00:00Z', ollama: 'iceburg-v1', exports: [{ path: 'a.gguf', sha256: 'b'.repeat(64), type: 'q4_k_m' }] });
    await reg.add({ name: 'iceburg-v2', parent: 'iceburg-v1', created: '2026-12-01T00:00:00Z' });
    expect(run('models', 'promote', 'iceburg-v1', '--root', root).stdout).toBe('iceburg-v1 is now current\n');
    const list = run('models', 'list', '--root', root);
    expect(list.status).toBe(0);
    expect(list.stdout.split('\n')[1]).toMatch(/^iceburg-v1\s+current\s+–\s+2026-11-01T00:00:00\s+q4_k_m\s+iceburg-v1$/);
    expect(list.stdout.split('\n')[2]).toMatch(/^iceburg-v2\s+candidate\s+iceburg-v1\s/);
    expect(JSON.parse(run('models', 'show', 'iceburg-v2', '--root', root).stdout)).toMatchObject({ name: 'iceburg-v2', parent: 'iceburg-v1', status: 'candidate' });
    run('models', 'promote', 'iceburg-v2', '--root', root);
    expect(run('models', 'retire', 'iceburg-v1', '--root', root).stdout).toBe('iceburg-v1 is retired\n');
    const bad = run('models', 'retire', 'iceburg-v2', '--root', root);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/versions\.json: iceburg-v2 is current; promote another version first/);
    expect((await reg.list()).map((v) => v.status)).toEqual(['retired', 'current']);
  });
});
