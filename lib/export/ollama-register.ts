/**
 * Registers an exported GGUF with a running Ollama: version check, blob upload by sha256 (skipped
 * when the server holds it), create with `files` (a model) or `from` + `adapters` (a LoRA adapter
 * on a base Ollama holds), then `show` to check the result. Version, list, create and show go
 * through ollama-js (Ollama's own client); blobs are plain fetch (ollama-blobs.ts). Every answer is
 * checked with zod: the client casts JSON without looking at it.
 */
import { basename } from 'node:path';
import type { CreateRequest, Ollama } from 'ollama';
import { z } from 'zod';
import { pushBlob, type OllamaStatus } from './ollama-blobs.js';
import { ollamaCall, ollamaClient, ollamaFailure, ollamaHostUrl } from './ollama-connection.js';
import { isAdapterRefusalMessage, OllamaAdapterRefusedError, OllamaRequestError } from './ollama-errors.js';
import { parseShowParameters } from './ollama-show.js';
import { checkOllamaModelName, isVersionedName, nextVersionedName } from './ollama-versions.js';

export type { OllamaStatus } from './ollama-blobs.js';

export interface OllamaRegisterOptions {
  /** The model name; ending in `-v` takes the next free version (`name1`, `name2`, …). */
  name: string;
  ggufPath: string;
  /** `model`: a whole GGUF model; `adapter`: a LoRA adapter GGUF on the Ollama model `from`. */
  kind: 'model' | 'adapter';
  from?: string;
  /** Go template (buildModelfile's `template`). */
  template?: string;
  system?: string;
  /** buildModelfile's `parameters` (stop as an array). */
  parameters?: Record<string, unknown>;
  /** Host or URL; default OLLAMA_HOST, else 127.0.0.1:11434. */
  host?: string;
  onStatus?: (s: OllamaStatus) => void;
}

export interface OllamaRegistration {
  /** The name created (with the version number for `-v` names). */
  model: string;
  version?: number;
  /** sha256 digest of the uploaded GGUF blob. */
  digest: string;
  /** False when the server already held the blob. */
  uploaded: boolean;
  host: string;
  serverVersion: string;
  kind: 'model' | 'adapter';
}

/** /api/create with `files` and `adapters` takes Ollama 0.5.5 or later (before, a Modelfile text). */
export const MIN_OLLAMA_VERSION = '0.5.5';

const parameterValue = z.union([z.number(), z.string(), z.boolean(), z.array(z.string())]);
const versionResponse = z.object({ version: z.string() });
const listResponse = z.object({ models: z.array(z.object({ name: z.string(), model: z.string().optional() })) });
const progressEvent = z.object({
  status: z.string(),
  digest: z.string().optional(),
  total: z.number().optional(),
  completed: z.number().optional(),
});
const showResponse = z.object({ template: z.string().optional(), parameters: z.string().optional(), system: z.string().optional() });

export async function registerWithOllama(o: OllamaRegisterOptions): Promise<OllamaRegistration> {
  if (o.kind === 'adapter' && !o.from) throw new Error('registering an adapter needs `from`: the base model Ollama holds');
  checkOllamaModelName(o.name);
  const parameters = o.parameters === undefined ? undefined : z.record(z.string(), parameterValue).parse(o.parameters);
  const host = ollamaHostUrl(o.host);
  const client = ollamaClient(host);
  const { version: serverVersion } = versionResponse.parse(await ollamaCall(host, 'GET /api/version', () => client.version()));
  checkServerVersion(host, serverVersion);

  let model = o.name;
  let version: number | undefined;
  if (isVersionedName(o.name)) {
    const list = listResponse.parse(await ollamaCall(host, 'GET /api/tags', () => client.list()));
    ({ name: model, version } = nextVersionedName(o.name, list.models.map((m) => m.model ?? m.name)));
  }

  const { digest, uploaded } = await pushBlob(host, o.ggufPath, o.onStatus);
  const file = { [basename(o.ggufPath)]: digest };
  // ollama-js 0.6.4's CreateRequest type lacks `files` (the server's field since 0.5.5); the client
  // sends the request object as given, so the wider type carries it.
  const request: CreateRequest & { files?: Record<string, string>; stream: true } = {
    model,
    stream: true,
    ...(o.kind === 'model' ? { files: file } : { from: o.from, adapters: file }),
    ...(o.template !== undefined && { template: o.template }),
    ...(o.system !== undefined && { system: o.system }),
    ...(parameters !== undefined && { parameters }),
  };
  await createModel(client, host, serverVersion, request, o);
  await checkCreated(client, host, model, o, parameters);
  return { model, version, digest, uploaded, host, serverVersion, kind: o.kind };
}

function checkServerVersion(host: string, version: string): void {
  const v = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  // Builds from source report 0.0.0: nothing to compare.
  if (!v || version.startsWith('0.0.0')) return;
  const [major, minor, patch] = [Number(v[1]), Number(v[2]), Number(v[3])];
  const [wantMinor, wantPatch] = [5, 5];
  const old = major === 0 && (minor < wantMinor || (minor === wantMinor && patch < wantPatch));
  if (old) {
    throw new OllamaRequestError(host, 'GET /api/version', undefined, `Ollama ${version} is older than ${MIN_OLLAMA_VERSION}, the first to create models from uploaded GGUF blobs; update Ollama`);
  }
}

async function createModel(
  client: Ollama,
  host: string,
  serverVersion: string,
  request: CreateRequest & { stream: true },
  o: OllamaRegisterOptions,
): Promise<void> {
  try {
    const events = await client.create(request);
    for await (const event of events) o.onStatus?.(progressEvent.parse(event));
  } catch (e) {
    const failure = ollamaFailure(host, 'POST /api/create', e);
    if (o.kind === 'adapter' && failure instanceof OllamaRequestError && isAdapterRefusalMessage(failure.serverMessage)) {
      throw new OllamaAdapterRefusedError(host, serverVersion, failure.serverMessage);
    }
    throw failure;
  }
}

/** `show` the new model: it must exist with our template, stop words and numeric parameters. */
async function checkCreated(
  client: Ollama,
  host: string,
  model: string,
  o: OllamaRegisterOptions,
  parameters: Record<string, z.infer<typeof parameterValue>> | undefined,
): Promise<void> {
  const shown = showResponse.parse(await ollamaCall(host, 'POST /api/show', () => client.show({ model })));
  const wrong = (what: string) =>
    new OllamaRequestError(host, 'POST /api/show', undefined, `the model ${model} was created, but its ${what} is not what we sent`);
  if (o.template !== undefined && shown.template !== o.template) throw wrong('template');
  if (o.system !== undefined && shown.system !== undefined && shown.system !== o.system) throw wrong('system prompt');
  const got = parseShowParameters(shown.parameters ?? '');
  for (const [key, value] of Object.entries(parameters ?? {})) {
    const want = (Array.isArray(value) ? value : [value]).map(String);
    const have = got.get(key) ?? [];
    const same = typeof value === 'number' ? have.length === 1 && Number(have[0]) === value : want.every((w) => have.includes(w));
    if (!same) throw wrong(`parameter ${key} (${JSON.stringify(have)})`);
  }
}
