import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { homedir, platform } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Resolves an Ollama model name to the GGUF blob Ollama already holds, by reading its local
 * store directly (no server needed): `<models>/manifests/<host>/<ns>/<model>/<tag>` (and the
 * newer `manifests-v2/`), then `<models>/blobs/sha256-<hex>`.
 */

export const OLLAMA_DEFAULT_HOST = 'registry.ollama.ai';
/** Newer Ollama stores default-registry manifests under this host in `manifests-v2/`. */
export const OLLAMA_V2_HOST = 'ollama.com';
export const OLLAMA_DEFAULT_NAMESPACE = 'library';
export const OLLAMA_DEFAULT_TAG = 'latest';

export const OLLAMA_MEDIA_TYPES = {
  model: 'application/vnd.ollama.image.model',
  adapter: 'application/vnd.ollama.image.adapter',
  projector: 'application/vnd.ollama.image.projector',
  template: 'application/vnd.ollama.image.template',
  system: 'application/vnd.ollama.image.system',
  params: 'application/vnd.ollama.image.params',
  license: 'application/vnd.ollama.image.license',
  messages: 'application/vnd.ollama.image.messages',
} as const;

const MANIFEST_LIST_MEDIA_TYPE = 'application/vnd.ollama.manifest.list.v2+json';
const DIGEST_RE = /^sha256[:-][0-9a-fA-F]{64}$/;
// Text layers are small; a bigger one is a mislabeled blob and is not read into memory.
const MAX_TEXT_LAYER_BYTES = 16 << 20;

export interface OllamaModelRef {
  readonly host: string;
  readonly namespace: string;
  readonly model: string;
  readonly tag: string;
}

const LayerSchema = z.looseObject({
  mediaType: z.string(),
  digest: z.string().regex(DIGEST_RE, 'digest must be sha256:<64 hex> or sha256-<64 hex>'),
  size: z.number().int().nonnegative(),
  from: z.string().optional(),
  name: z.string().optional(),
});

const ManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: LayerSchema.optional(),
  layers: z.array(LayerSchema),
  runner: z.string().optional(),
  format: z.string().optional(),
});

/** A manifest-list entry: an inline manifest or a reference to a manifest stored as a blob. */
const ManifestListEntrySchema = z.union([
  ManifestSchema,
  z.looseObject({ mediaType: z.string().optional(), digest: z.string().regex(DIGEST_RE), runner: z.string().optional(), format: z.string().optional() }),
]);

const ManifestListSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MANIFEST_LIST_MEDIA_TYPE),
  manifests: z.array(ManifestListEntrySchema),
});

export type OllamaLayer = z.infer<typeof LayerSchema>;
export type OllamaManifest = z.infer<typeof ManifestSchema>;

export interface OllamaModel {
  /** Fully qualified, e.g. `registry.ollama.ai/library/dolphin-mistral:7b`. */
  readonly name: string;
  readonly ref: OllamaModelRef;
  readonly modelsDir: string;
  readonly manifestPath: string;
  /** The runnable manifest (the GGUF child when the file is a manifest list). */
  readonly manifest: OllamaManifest;
  /** The GGUF blob. */
  readonly modelPath: string;
  readonly modelDigest: string;
  readonly modelSize: number;
  readonly template?: string;
  readonly system?: string;
  /** The params layer (`{"stop": [...], "num_ctx": ...}`). */
  readonly params?: Readonly<Record<string, unknown>>;
  readonly license: readonly string[];
  readonly messages?: readonly unknown[];
  readonly adapterPaths: readonly string[];
  readonly projectorPaths: readonly string[];
}

export interface ResolveOllamaOptions {
  /** Use this store instead of `$OLLAMA_MODELS` / the default locations. */
  readonly modelsDir?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Hash the whole model blob and compare with its digest (slow for multi-GB blobs). */
  readonly verifyModelDigest?: boolean;
}

export class OllamaModelNotFoundError extends Error {
  override readonly name = 'OllamaModelNotFoundError';
  constructor(
    message: string,
    readonly searched: readonly string[],
    readonly available: readonly string[],
  ) {
    super(message);
  }
}

const PART_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const HOST_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[0-9]+)?$/;

/**
 * Parses `[scheme://][host/][namespace/]model[:tag]` as Ollama does (a `:` after the last `/`
 * starts the tag, so `host:port/ns/m` keeps its port) and fills the defaults.
 */
export function parseOllamaModelName(name: string): OllamaModelRef {
  let s = name.trim().replace(/^[a-z]+:\/\//i, '');
  let tag = OLLAMA_DEFAULT_TAG;
  const colon = s.lastIndexOf(':');
  if (colon > s.lastIndexOf('/')) {
    tag = s.slice(colon + 1);
    s = s.slice(0, colon);
  }
  const parts = s.split('/');
  if (parts.length > 3) throw new Error(`invalid Ollama model name '${name}': expected [host/][namespace/]model[:tag]`);
  const model = parts.pop() ?? '';
  const namespace = parts.pop() ?? OLLAMA_DEFAULT_NAMESPACE;
  const host = parts.pop() ?? OLLAMA_DEFAULT_HOST;
  for (const [what, value, re] of [['host', host, HOST_RE], ['namespace', namespace, PART_RE], ['model', model, PART_RE], ['tag', tag, PART_RE]] as const) {
    if (!re.test(value)) throw new Error(`invalid Ollama model name '${name}': bad ${what} '${value}'`);
  }
  return { host, namespace, model, tag };
}

export function formatOllamaModelRef(ref: OllamaModelRef): string {
  return `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
}

/** The stores to search: `$OLLAMA_MODELS` alone if set, else the per-user and Linux-service defaults. */
export function ollamaModelsDirs(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const configured = env.OLLAMA_MODELS?.trim().replace(/^["']|["']$/g, '');
  if (configured) return [configured];
  const dirs = [join(homedir(), '.ollama', 'models')];
  if (platform() === 'linux') dirs.push('/usr/share/ollama/.ollama/models');
  return dirs;
}

export function ollamaBlobPath(modelsDir: string, digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new Error(`invalid blob digest '${digest}'`);
  return join(modelsDir, 'blobs', digest.replace(':', '-'));
}

/** Lists `host/namespace/model:tag` of every manifest in one store. */
export async function listOllamaModels(modelsDir: string): Promise<string[]> {
  return (await listManifestFiles(modelsDir)).map((m) => formatOllamaModelRef(m.ref)).filter((v, i, a) => a.indexOf(v) === i).sort();
}

export async function resolveOllamaModel(name: string, options: ResolveOllamaOptions = {}): Promise<OllamaModel> {
  const ref = parseOllamaModelName(name);
  const dirs = options.modelsDir !== undefined ? [options.modelsDir] : ollamaModelsDirs(options.env);
  const searched: string[] = [];
  const available: string[] = [];
  for (const dir of dirs) {
    const candidates = manifestCandidates(dir, ref);
    for (const path of candidates) {
      searched.push(path);
      if (await isFile(path)) return readOllamaManifest(dir, ref, path, options);
    }
    // Ollama compares names case-insensitively, and some versions store them lowercased.
    const listed = await listManifestFiles(dir);
    const folded = listed.find((m) => sameRef(m.ref, ref));
    if (folded !== undefined) return readOllamaManifest(dir, ref, folded.path, options);
    available.push(...listed.map((m) => formatOllamaModelRef(m.ref)));
  }
  const have = [...new Set(available)].sort();
  throw new OllamaModelNotFoundError(
    `Ollama model '${name}' (${formatOllamaModelRef(ref)}) not found. Looked at:\n  ${searched.join('\n  ')}\n` +
      (have.length > 0 ? `Models present: ${have.join(', ')}` : `No models found in ${dirs.join(', ')} (set OLLAMA_MODELS if Ollama stores them elsewhere)`),
    searched,
    have,
  );
}

function isDefaultHost(host: string): boolean {
  return host.toLowerCase() === OLLAMA_DEFAULT_HOST || host.toLowerCase() === OLLAMA_V2_HOST;
}

function manifestCandidates(dir: string, ref: OllamaModelRef): string[] {
  const tail = [ref.namespace, ref.model, ref.tag];
  const hosts = isDefaultHost(ref.host) ? [OLLAMA_DEFAULT_HOST, OLLAMA_V2_HOST] : [ref.host];
  const v2Host = isDefaultHost(ref.host) ? OLLAMA_V2_HOST : ref.host;
  const paths = [join(dir, 'manifests-v2', v2Host, ...tail), ...hosts.map((h) => join(dir, 'manifests', h, ...tail))];
  return [...new Set(paths)];
}

function sameRef(a: OllamaModelRef, b: OllamaModelRef): boolean {
  const eq = (x: string, y: string): boolean => x.toLowerCase() === y.toLowerCase();
  const hostEq = eq(a.host, b.host) || (isDefaultHost(a.host) && isDefaultHost(b.host));
  return hostEq && eq(a.namespace, b.namespace) && eq(a.model, b.model) && eq(a.tag, b.tag);
}

async function listManifestFiles(dir: string): Promise<{ ref: OllamaModelRef; path: string }[]> {
  const out: { ref: OllamaModelRef; path: string }[] = [];
  for (const root of ['manifests-v2', 'manifests']) {
    for (const [host, namespace, model, tag] of await walk(join(dir, root), 4)) {
      if (host === undefined || namespace === undefined || model === undefined || tag === undefined) continue;
      const normalizedHost = isDefaultHost(host) ? OLLAMA_DEFAULT_HOST : host;
      out.push({ ref: { host: normalizedHost, namespace, model, tag }, path: join(dir, root, host, namespace, model, tag) });
    }
  }
  return out;
}

/** Relative paths of the files exactly `depth` levels below `dir`. */
async function walk(dir: string, depth: number): Promise<string[][]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[][] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (depth === 1) {
      if (e.isFile() || e.isSymbolicLink()) out.push([e.name]);
    } else if (e.isDirectory()) {
      for (const rest of await walk(join(dir, e.name), depth - 1)) out.push([e.name, ...rest]);
    }
  }
  return out;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readJson(path: string, what: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function zodProblem(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

async function readManifest(modelsDir: string, path: string): Promise<OllamaManifest> {
  const raw = await readJson(path, 'Ollama manifest');
  const list = ManifestListSchema.safeParse(raw);
  if (list.success) return selectFromList(modelsDir, path, list.data.manifests);
  const single = ManifestSchema.safeParse(raw);
  if (!single.success) throw new Error(`Ollama manifest ${path} is malformed: ${zodProblem(single.error)}`);
  return single.data;
}

/** Picks the child manifest that carries a GGUF model layer (the llama.cpp/Ollama runners'). */
async function selectFromList(modelsDir: string, path: string, entries: z.infer<typeof ManifestListEntrySchema>[]): Promise<OllamaManifest> {
  const seen: string[] = [];
  for (const entry of entries) {
    let child: OllamaManifest;
    if ('layers' in entry) child = entry as OllamaManifest;
    else {
      const blob = ollamaBlobPath(modelsDir, entry.digest);
      const parsed = ManifestSchema.safeParse(await readJson(blob, 'Ollama child manifest'));
      if (!parsed.success) throw new Error(`Ollama child manifest ${blob} (listed in ${path}) is malformed: ${zodProblem(parsed.error)}`);
      child = { ...parsed.data, runner: parsed.data.runner ?? entry.runner, format: parsed.data.format ?? entry.format };
    }
    seen.push(`${child.runner ?? '?'}/${child.format ?? '?'}`);
    if (child.format?.toLowerCase() !== 'safetensors' && child.layers.some((l) => l.mediaType === OLLAMA_MEDIA_TYPES.model)) return child;
  }
  throw new Error(`Ollama manifest list ${path} has no GGUF model manifest (entries: ${seen.join(', ') || 'none'})`);
}

async function readOllamaManifest(modelsDir: string, ref: OllamaModelRef, manifestPath: string, options: ResolveOllamaOptions): Promise<OllamaModel> {
  const manifest = await readManifest(modelsDir, manifestPath);
  const of = (type: string): OllamaLayer[] => manifest.layers.filter((l) => l.mediaType === type);
  const models = of(OLLAMA_MEDIA_TYPES.model);
  if (models.length !== 1) {
    throw new Error(`Ollama manifest ${manifestPath} has ${models.length} model layers (expected one GGUF layer; media types: ${manifest.layers.map((l) => l.mediaType).join(', ')})`);
  }
  const model = models[0] as OllamaLayer;
  const modelPath = await blobFile(modelsDir, model, manifestPath);
  if (options.verifyModelDigest === true) checkDigest(modelPath, model.digest, await hashFile(modelPath));

  const text = async (l: OllamaLayer | undefined): Promise<string | undefined> => (l === undefined ? undefined : (await readSmallBlob(modelsDir, l, manifestPath)).toString('utf8'));
  const json = async (l: OllamaLayer | undefined): Promise<unknown> => {
    const t = await text(l);
    if (t === undefined) return undefined;
    try {
      return JSON.parse(t) as unknown;
    } catch (err) {
      throw new Error(`Ollama layer ${l?.mediaType} ${l?.digest} is not valid JSON: ${(err as Error).message}`);
    }
  };
  const params = await json(of(OLLAMA_MEDIA_TYPES.params).at(-1));
  const paramsParsed = params === undefined ? undefined : z.record(z.string(), z.unknown()).safeParse(params);
  if (paramsParsed !== undefined && !paramsParsed.success) throw new Error(`Ollama params layer of ${manifestPath} is not a JSON object`);
  const messages = await json(of(OLLAMA_MEDIA_TYPES.messages).at(-1));
  if (messages !== undefined && !Array.isArray(messages)) throw new Error(`Ollama messages layer of ${manifestPath} is not a JSON array`);

  return {
    name: formatOllamaModelRef(ref),
    ref,
    modelsDir,
    manifestPath,
    manifest,
    modelPath,
    modelDigest: model.digest.replace('-', ':'),
    modelSize: model.size,
    template: await text(of(OLLAMA_MEDIA_TYPES.template).at(-1)),
    system: await text(of(OLLAMA_MEDIA_TYPES.system).at(-1)),
    params: paramsParsed?.data,
    license: await Promise.all(of(OLLAMA_MEDIA_TYPES.license).map(async (l) => (await text(l)) ?? '')),
    messages: messages as unknown[] | undefined,
    adapterPaths: await Promise.all(of(OLLAMA_MEDIA_TYPES.adapter).map((l) => blobFile(modelsDir, l, manifestPath))),
    projectorPaths: await Promise.all(of(OLLAMA_MEDIA_TYPES.projector).map((l) => blobFile(modelsDir, l, manifestPath))),
  };
}

/** The blob's path under `sha256-<hex>` (current) or `sha256:<hex>` (old stores); its size must match the manifest. */
async function blobFile(modelsDir: string, layer: OllamaLayer, manifestPath: string): Promise<string> {
  const hex = layer.digest.slice(7);
  const names = [`sha256-${hex}`, `sha256:${hex}`, `sha256-${hex.toLowerCase()}`];
  const tried: string[] = [];
  for (const n of [...new Set(names)]) {
    const path = join(modelsDir, 'blobs', n);
    tried.push(path);
    let size: number;
    try {
      const s = await stat(path);
      if (!s.isFile()) continue;
      size = s.size;
    } catch {
      continue;
    }
    if (size !== layer.size) {
      throw new Error(`Ollama blob ${path} is ${size} bytes but manifest ${manifestPath} says ${layer.size} (incomplete pull?)`);
    }
    return path;
  }
  throw new Error(`Ollama blob for ${layer.mediaType} ${layer.digest} (from ${manifestPath}) is missing; looked at ${tried.join(', ')}`);
}

async function readSmallBlob(modelsDir: string, layer: OllamaLayer, manifestPath: string): Promise<Buffer> {
  if (layer.size > MAX_TEXT_LAYER_BYTES) throw new Error(`Ollama ${layer.mediaType} layer ${layer.digest} is ${layer.size} bytes, too big for a text layer`);
  const path = await blobFile(modelsDir, layer, manifestPath);
  const data = await readFile(path);
  checkDigest(path, layer.digest, createHash('sha256').update(data).digest('hex'));
  return data;
}

/** Streams, since model blobs are larger than a Buffer may be. */
async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function checkDigest(path: string, digest: string, sha256Hex: string): void {
  if (sha256Hex !== digest.slice(7).toLowerCase()) throw new Error(`Ollama blob ${path} does not match its digest ${digest} (sha256 is ${sha256Hex})`);
}
