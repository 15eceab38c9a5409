/**
 * The version registry: one JSON file in an output root listing every trained version — its
 * parent, where its data and config came from, its evaluation, its exports and its Ollama name —
 * and which one is current. Every change takes the root's lock, reads, changes and replaces the
 * file atomically, so two writers (a retrain and a `models promote`) never lose each other's work.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { acquireFileLock } from '../io/file-lock.js';
import { writeFileAtomic } from '../io/atomic-file.js';

export const REGISTRY_FILE = 'versions.json';
const LOCK_FILE = 'versions.lock';

export const versionExportSchema = z.object({
  path: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** adapter, f32, f16, bf16, q8_0, q4_0, q4_k_m, peft. */
  type: z.string(),
  bytes: z.int().min(0).optional(),
});

export const versionSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'letters, digits, dot, dash and underscore'),
  parent: z.string().nullable(),
  created: z.string(),
  status: z.enum(['candidate', 'current', 'previous', 'retired']).default('candidate'),
  base_model: z.string().optional(),
  adapter: z.string().optional(),
  data_manifest_hash: z.string().optional(),
  config_hash: z.string().optional(),
  eval: z.record(z.string(), z.unknown()).optional(),
  exports: z.array(versionExportSchema).default([]),
  ollama: z.string().optional(),
  notes: z.string().optional(),
});

const registrySchema = z.object({ format: z.literal(1), versions: z.array(versionSchema) });

export type ModelVersion = z.output<typeof versionSchema>;
export type ModelVersionInput = z.input<typeof versionSchema>;
type RegistryContent = z.output<typeof registrySchema>;

export class RegistryError extends Error {
  override readonly name = 'RegistryError';
}

async function readContent(file: string): Promise<RegistryContent> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, versions: [] };
    throw new RegistryError(`${file}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RegistryError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  const parsed = registrySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RegistryError(`${file}: ${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'not a version registry'}`);
  }
  return parsed.data;
}

function find(content: RegistryContent, name: string, file: string): ModelVersion {
  const version = content.versions.find((v) => v.name === name);
  if (!version) throw new RegistryError(`${file}: no version named ${name} (known: ${content.versions.map((v) => v.name).join(', ') || 'none'})`);
  return version;
}

export interface VersionRegistry {
  readonly file: string;
  list(): Promise<ModelVersion[]>;
  get(name: string): Promise<ModelVersion>;
  current(): Promise<ModelVersion | undefined>;
  /** Records a new version (a candidate unless it says otherwise). */
  add(version: ModelVersionInput): Promise<ModelVersion>;
  update(name: string, patch: Partial<Omit<ModelVersionInput, 'name'>>): Promise<ModelVersion>;
  /** Makes `name` current; the version that was current becomes previous. */
  promote(name: string): Promise<ModelVersion>;
  retire(name: string): Promise<ModelVersion>;
}

export function openRegistry(root: string): VersionRegistry {
  const file = join(root, REGISTRY_FILE);
  const change = async <T>(mutate: (content: RegistryContent) => T): Promise<T> => {
    await mkdir(root, { recursive: true });
    const lock = await acquireFileLock(join(root, LOCK_FILE), (detail) => new RegistryError(`${file} is being changed by another process (${detail})`));
    try {
      const content = await readContent(file);
      const result = mutate(content);
      await writeFileAtomic(file, `${JSON.stringify(registrySchema.parse(content), null, 2)}\n`);
      return result;
    } finally {
      await lock.release();
    }
  };
  return {
    file,
    list: async () => (await readContent(file)).versions,
    get: async (name) => find(await readContent(file), name, file),
    current: async () => (await readContent(file)).versions.find((v) => v.status === 'current'),
    add: (input) =>
      change((content) => {
        if (content.versions.some((v) => v.name === input.name)) throw new RegistryError(`${file}: version ${input.name} already exists`);
        const version = versionSchema.parse(input);
        if (version.parent !== null) find(content, version.parent, file);
        content.versions.push(version);
        return version;
      }),
    update: (name, patch) =>
      change((content) => {
        const index = content.versions.indexOf(find(content, name, file));
        content.versions[index] = versionSchema.parse({ ...content.versions[index], ...patch, name });
        return content.versions[index]!;
      }),
    promote: (name) =>
      change((content) => {
        const version = find(content, name, file);
        if (version.status === 'retired') throw new RegistryError(`${file}: ${name} is retired; it cannot become current`);
        for (const v of content.versions) if (v.status === 'current' && v !== version) v.status = 'previous';
        version.status = 'current';
        return version;
      }),
    retire: (name) =>
      change((content) => {
        const version = find(content, name, file);
        if (version.status === 'current') throw new RegistryError(`${file}: ${name} is current; promote another version first`);
        version.status = 'retired';
        return version;
      }),
  };
}
