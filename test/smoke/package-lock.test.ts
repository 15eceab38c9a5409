/**
 * `npm ci` installs exactly what package-lock.json records and refuses a lock that lacks an entry
 * package.json or a locked package asks for, on any platform: a dependency's optional builds for
 * other platforms (node-llama-cpp's @node-llama-cpp/*) must be in the lock even where they are
 * never installed, or a contributor on another machine cannot `npm ci`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

const root = join(import.meta.dirname, '..', '..');

const depsSchema = z.record(z.string(), z.string()).optional();
const lockEntrySchema = z
  .object({
    version: z.string().optional(),
    dependencies: depsSchema,
    optionalDependencies: depsSchema,
    devDependencies: depsSchema,
    peerDependencies: depsSchema,
    peerDependenciesMeta: z.record(z.string(), z.object({ optional: z.boolean().optional() }).loose()).optional(),
  })
  .loose();
const lockSchema = z.object({ lockfileVersion: z.number(), packages: z.record(z.string(), lockEntrySchema) }).loose();
const packageSchema = z.object({ dependencies: depsSchema, devDependencies: depsSchema, optionalDependencies: depsSchema }).loose();

type LockEntry = z.infer<typeof lockEntrySchema>;

/** The lock path Node's module resolution finds for `name` required from the package at `from`. */
function resolveInLock(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (!base) return undefined;
    const up = base.lastIndexOf('/node_modules/');
    base = up < 0 ? '' : base.slice(0, up);
  }
}

/** Every dependency a locked package declares (dev ones only for the root) that the lock cannot resolve. */
function unresolvedLockDependencies(lock: z.infer<typeof lockSchema>): string[] {
  const missing: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const requiredPeers = Object.keys(entry.peerDependencies ?? {}).filter((n) => !entry.peerDependenciesMeta?.[n]?.optional);
    const names = new Set([
      ...Object.keys(entry.dependencies ?? {}),
      ...Object.keys(entry.optionalDependencies ?? {}),
      ...(path === '' ? Object.keys(entry.devDependencies ?? {}) : []),
      ...requiredPeers,
    ]);
    for (const name of names) {
      if (resolveInLock(lock.packages, path, name) === undefined) missing.push(`${path || '(root)'} → ${name}`);
    }
  }
  return missing.sort();
}

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(join(root, file), 'utf8'));
}

describe('package-lock.json is complete for npm ci', () => {
  const lock = lockSchema.parse(readJson('package-lock.json'));

  it('has an entry for every dependency of every locked package, optional platform builds included', () => {
    expect(lock.lockfileVersion).toBeGreaterThanOrEqual(2);
    expect(unresolvedLockDependencies(lock)).toEqual([]);
  });

  it('records node-llama-cpp with all of its optional platform packages', () => {
    const entry = lock.packages['node_modules/node-llama-cpp'];
    const optional = Object.keys(entry?.optionalDependencies ?? {});
    // The oracle's macOS and Windows builds: a lock made where the registry lacked them had none.
    expect(optional).toContain('@node-llama-cpp/mac-arm64-metal');
    for (const name of optional) expect(lock.packages[`node_modules/${name}`]?.version, name).toBeTypeOf('string');
  });

  it('lists exactly package.json\'s dependencies in its root entry', () => {
    const pkg = packageSchema.parse(readJson('package.json'));
    const rootEntry = lock.packages[''];
    expect(rootEntry?.dependencies ?? {}).toEqual(pkg.dependencies ?? {});
    expect(rootEntry?.devDependencies ?? {}).toEqual(pkg.devDependencies ?? {});
    expect(rootEntry?.optionalDependencies ?? {}).toEqual(pkg.optionalDependencies ?? {});
  });

  it('finds what a lock made without the other platforms\' builds lacks', () => {
    const broken = structuredClone(lock);
    delete broken.packages['node_modules/@node-llama-cpp/mac-arm64-metal'];
    expect(unresolvedLockDependencies(broken)).toContain('node_modules/node-llama-cpp → @node-llama-cpp/mac-arm64-metal');
  });
});
