/**
 * exportModel(): a run, a checkpoint, an adapter folder or a bare base model → an adapter GGUF or
 * a (fused) model GGUF, optionally a PEFT folder, a Modelfile and an Ollama model. Everything is
 * checked before anything is written, the files appear together or not at all (StagedFiles), and
 * registration comes last, on files already in place.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { WrittenGguf } from '../gguf/writer.js';
import { architectureOfModel } from '../model/architecture-of.js';
import { writeAdapterGguf } from './adapter-gguf.js';
import { baseChatTemplate, ollamaBaseOf } from './export-base.js';
import { resolveExportInput, type ExportInput } from './export-input.js';
import { parseExportOptions, type ExportGgufKind, type ExportOptions, type ExportOptionsInput, type ExportProgress } from './export-options.js';
import { writeGgufModel } from './gguf-model.js';
import { buildModelfile, pathFrom, type BuiltModelfile } from './modelfile.js';
import { ollamaCall, ollamaClient, ollamaHostUrl } from './ollama-connection.js';
import { OllamaAdapterRefusedError } from './ollama-errors.js';
import { registerWithOllama, type OllamaRegistration } from './ollama-register.js';
import { writePeftAdapter } from './peft.js';
import { StagedFiles } from './staged-files.js';

export interface ExportedFiles {
  /** The GGUF written. */
  out: string;
  type: ExportGgufKind;
  bytes: number;
  tensors: number;
  modelfile?: string;
}

export interface ExportResult extends ExportedFiles {
  input: ExportInput;
  peft?: string;
  ollama?: OllamaRegistration;
  /** The fused Q4_K_M model written and registered instead, because Ollama refused the adapter. */
  fallback?: ExportedFiles;
}

/** Ollama refused the adapter and no fallback was asked for; the files written stay, and are in `result`. */
export class OllamaRefusedAdapterExportError extends Error {
  override readonly name = 'OllamaRefusedAdapterExportError';
  constructor(
    message: string,
    readonly result: ExportResult,
    /** Where the fused Q4_K_M model would go. */
    readonly fusedOut: string,
  ) {
    super(message);
  }
}

type ModelfileText = BuiltModelfile;

/** The Modelfile sits beside the GGUF: `model.gguf` → `model.Modelfile`. */
export function modelfilePathFor(out: string): string {
  return out.replace(/\.gguf$/i, '.Modelfile');
}

/** Where the fused fallback goes: `adapter.gguf` → `adapter.fused-q4_k_m.gguf`. */
export function fusedPathFor(out: string): string {
  return out.replace(/\.gguf$/i, '.fused-q4_k_m.gguf');
}

/** Built before any file is written, so an untranslatable chat template costs nothing. */
async function planModelfile(o: ExportOptions, input: ExportInput, gguf: string, kind: 'adapter' | 'model'): Promise<ModelfileText> {
  const own = `./${basename(gguf)}`;
  const base = kind === 'adapter' ? ollamaBaseOf(input.base, input.source, o.ollama !== undefined) : undefined;
  // A GGUF base is named by its path relative to the Modelfile, as Ollama resolves FROM.
  const from = !base ? own : base.ollamaName ?? pathFrom(dirname(gguf), base.from);
  const template = o.template === undefined ? undefined : await readFile(o.template, 'utf8').catch((e: Error) => {
    throw new Error(`--template ${o.template}: ${e.message}`);
  });
  const chatTemplate = template === undefined ? await baseChatTemplate(input.base, o.ollamaModelsDir) : undefined;
  if (template === undefined && chatTemplate === undefined) {
    throw new Error(`the base ${input.base} has no chat template to translate into the Modelfile's TEMPLATE; pass --template FILE (an Ollama Go template)`);
  }
  try {
    return buildModelfile({
      from,
      ...(kind === 'adapter' ? { adapter: own } : {}),
      ...(chatTemplate !== undefined ? { chatTemplate: chatTemplate.source } : {}),
      ...(template !== undefined ? { template } : {}),
      ...(o.system !== undefined ? { system: o.system } : {}),
    });
  } catch (error) {
    const where = chatTemplate ? `${input.base} (chat template from ${chatTemplate.where})` : `--template ${o.template}`;
    throw new Error(`${where}: ${(error as Error).message}`, { cause: error });
  }
}

/** A writer's error, naming the target rather than the hidden staged file, and the target when it names nothing. */
function namingTarget(error: unknown, staged: string, target: string): Error {
  const e = error instanceof Error ? error : new Error(String(error));
  const message = e.message.split(staged).join(target);
  return new Error(message.includes(target) ? message : `${target}: ${message}`, { cause: e });
}

async function writeGgufTo(o: ExportOptions, input: ExportInput, path: string, type: ExportGgufKind, report: (p: ExportProgress) => void, target: string): Promise<{ bytes: number; tensors: number }> {
  const models = o.ollamaModelsDir ? { ollamaModelsDir: o.ollamaModelsDir } : {};
  let written: WrittenGguf;
  if (type === 'adapter') {
    written = await writeAdapterGguf(input.adapterDir!, await architectureOfModel(input.base, models), path, { dtype: o.adapterDtype, ...(o.name ? { name: o.name } : {}) });
  } else {
    report({ phase: 'load', what: input.description });
    // Streamed from the base's files, tensor by tensor, with the adapter merged over its own weights.
    written = await writeGgufModel({ source: input.base, ...(input.adapterDir ? { adapter: input.adapterDir } : {}), ...models }, path, {
      type,
      ...(o.name ? { name: o.name } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (p) => report({ phase: 'tensors', file: target, ...p }),
    });
  }
  return { bytes: written.size, tensors: written.tensors.length };
}

/** The GGUF (and Modelfile, and PEFT folder) staged, then renamed into place together. */
async function writeFiles(o: ExportOptions, input: ExportInput, out: string, type: ExportGgufKind, report: (p: ExportProgress) => void): Promise<{ files: ExportedFiles; modelfile?: ModelfileText }> {
  const kind = type === 'adapter' ? 'adapter' : 'model';
  const modelfile = o.modelfile || o.ollama !== undefined ? await planModelfile(o, input, out, kind) : undefined;
  await mkdir(dirname(out), { recursive: true });
  const staged = new StagedFiles();
  try {
    const ggufTemp = staged.path(out);
    const written = await writeGgufTo(o, input, ggufTemp, type, report, out).catch((error: unknown) => {
      throw namingTarget(error, ggufTemp, out);
    });
    let modelfilePath: string | undefined;
    if (o.modelfile && modelfile) {
      modelfilePath = modelfilePathFor(out);
      const temp = staged.path(modelfilePath);
      await writeFileDurably(temp, modelfile.text).catch((error: unknown) => {
        throw namingTarget(error, temp, modelfilePath!);
      });
    }
    if (o.peft !== undefined && type === o.gguf) {
      // Replaced as --out is: an export run again writes its outputs again.
      const base = await architectureOfModel(input.base, o.ollamaModelsDir ? { ollamaModelsDir: o.ollamaModelsDir } : {});
      await writePeftAdapter(input.adapterDir!, resolve(o.peft), { baseModel: input.base, base, overwrite: true }).catch((error: Error) => {
        throw new Error(`--peft ${o.peft}: ${error.message}`, { cause: error });
      });
    }
    o.signal?.throwIfAborted();
    await staged.commit();
    return { files: { out, type, ...written, ...(modelfilePath ? { modelfile: modelfilePath } : {}) }, ...(modelfile ? { modelfile } : {}) };
  } catch (error) {
    await staged.discard();
    throw error;
  }
}

async function writeFileDurably(path: string, text: string): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function register(o: ExportOptions, input: ExportInput, files: ExportedFiles, modelfile: ModelfileText, report: (p: ExportProgress) => void): Promise<OllamaRegistration> {
  const adapter = files.type === 'adapter';
  return registerWithOllama({
    name: o.ollama!,
    ggufPath: files.out,
    kind: adapter ? 'adapter' : 'model',
    ...(adapter ? { from: ollamaBaseOf(input.base, input.source, true).from } : {}),
    template: modelfile.template,
    ...(o.system !== undefined ? { system: o.system } : {}),
    parameters: modelfile.parameters,
    ...(o.ollamaHost ? { host: o.ollamaHost } : {}),
    onStatus: (s) => report({ phase: 'ollama', status: s.status, completed: s.completed, total: s.total }),
  });
}

/** Asked before anything is written: a server that is down costs a second, not a finished export. */
async function checkOllamaReachable(host: string | undefined): Promise<void> {
  const url = ollamaHostUrl(host);
  await ollamaCall(url, 'GET /api/version', () => ollamaClient(url).version());
}

export async function exportModel(options: ExportOptionsInput): Promise<ExportResult> {
  const o = parseExportOptions(options);
  const report = o.onProgress ?? (() => undefined);
  const input = await resolveExportInput(o);
  if (o.ollama !== undefined) await checkOllamaReachable(o.ollamaHost);
  const out = resolve(o.out);
  const { files, modelfile } = await writeFiles(o, input, out, o.gguf, report);
  const result: ExportResult = { ...files, input, ...(o.peft !== undefined ? { peft: resolve(o.peft) } : {}) };
  if (o.ollama === undefined || !modelfile) return result;
  try {
    return { ...result, ollama: await register(o, input, files, modelfile, report) };
  } catch (error) {
    if (!(error instanceof OllamaAdapterRefusedError)) throw error;
    const fusedOut = fusedPathFor(out);
    if (o.fallback !== 'fused') {
      throw new OllamaRefusedAdapterExportError(
        `${error.message}\nThe adapter GGUF is written (${out}). Ollama still takes the fused model: rerun with --fallback fused ` +
          `(writes the Q4_K_M model to ${fusedOut} and registers it as ${o.ollama}), or export it with --gguf q4_k_m.`,
        result,
        fusedOut,
      );
    }
    report({ phase: 'note', message: `${error.message}; exporting the fused Q4_K_M model instead (${fusedOut})` });
    const fused = await writeFiles(o, input, fusedOut, 'q4_k_m', report);
    return { ...result, fallback: fused.files, ollama: await register(o, input, fused.files, fused.modelfile!, report) };
  }
}
