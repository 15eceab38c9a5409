/**
 * An Ollama Modelfile for an exported model: FROM (a GGUF beside it, or the base's Ollama name for
 * an adapter), ADAPTER, TEMPLATE (Ollama's own Go template for the model's chat format), SYSTEM and
 * PARAMETER lines. Values are quoted so that Ollama's parser (parser/parser.go) reads back exactly
 * what we wrote; values it cannot carry are refused rather than silently changed.
 */
import { dirname, isAbsolute, relative, sep } from 'node:path';
import { AtomicFile } from '../io/atomic-file.js';
import { resolveOllamaTemplate } from './ollama-template-match.js';

export type ModelfileParameterValue = number | string | string[];
export type ModelfileParameters = Record<string, ModelfileParameterValue>;

export interface ModelfileOptions {
  /** `./model.gguf` (relative to the Modelfile, or absolute) or an Ollama model name. */
  from: string;
  /** The adapter GGUF (adapter mode); `from` is then the base's Ollama name. */
  adapter?: string;
  /** The model's Jinja chat template (or a built-in's name); translated for the known formats. */
  chatTemplate?: string;
  /** A Go template given by the user; wins over chatTemplate. */
  template?: string;
  system?: string;
  /** Extra or overriding parameters; `stop` values are added to the template's. */
  parameters?: ModelfileParameters;
}

export interface BuiltModelfile {
  text: string;
  /** The Go template written as TEMPLATE. */
  template: string;
  stop: string[];
  /** Every PARAMETER, stop as an array: the same object serves Ollama's create request. */
  parameters: ModelfileParameters;
}

/** Sampling for a tuned chat model: a little variety (0.7), the unlikely tail cut (nucleus 0.9). */
export const DEFAULT_SAMPLING: Readonly<ModelfileParameters> = { temperature: 0.7, top_p: 0.9 };

export function buildModelfile(o: ModelfileOptions): BuiltModelfile {
  const { goTemplate, stop } = resolveOllamaTemplate(o);
  const parameters = modelfileParameters(stop, o.parameters);
  const lines = ['# Modelfile written by mlx-qlora', `FROM ${quoteModelfileValue(oneLine(o.from, 'FROM'), 'FROM')}`];
  if (o.adapter !== undefined) lines.push(`ADAPTER ${quoteModelfileValue(oneLine(o.adapter, 'ADAPTER'), 'ADAPTER')}`);
  lines.push(`TEMPLATE ${tripleQuote(goTemplate, 'TEMPLATE')}`);
  if (o.system !== undefined) lines.push(`SYSTEM ${tripleQuote(o.system, 'SYSTEM')}`);
  for (const [name, value] of Object.entries(parameters)) {
    if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`Modelfile PARAMETER name "${name}" is not letters, digits and _`);
    for (const v of Array.isArray(value) ? value : [value]) {
      lines.push(`PARAMETER ${name} ${parameterText(v, name)}`);
    }
  }
  return { text: lines.join('\n') + '\n', template: goTemplate, stop: parameters.stop, parameters };
}

/** stop (the template's, then the caller's, without repeats) first, then sampling, then the rest. */
export function modelfileParameters(stop: readonly string[], extra: ModelfileParameters = {}): ModelfileParameters & { stop: string[] } {
  const extraStop = extra.stop === undefined ? [] : Array.isArray(extra.stop) ? extra.stop : [String(extra.stop)];
  const out: ModelfileParameters & { stop: string[] } = { stop: [...new Set([...stop, ...extraStop])], ...DEFAULT_SAMPLING };
  for (const [k, v] of Object.entries(extra)) if (k !== 'stop') out[k] = v;
  return out;
}

/** Writes the Modelfile atomically; absolute FROM/ADAPTER file paths become relative to it. */
export async function writeModelfile(path: string, o: ModelfileOptions): Promise<BuiltModelfile> {
  const dir = dirname(path);
  const built = buildModelfile({
    ...o,
    from: isAbsolute(o.from) ? pathFrom(dir, o.from) : o.from,
    adapter: o.adapter !== undefined && isAbsolute(o.adapter) ? pathFrom(dir, o.adapter) : o.adapter,
  });
  const file = await AtomicFile.create(path);
  try {
    await file.write(Buffer.from(built.text, 'utf8'));
    await file.commit();
  } catch (e) {
    await file.abort();
    throw e;
  }
  return built;
}

/** `./x.gguf` for a file beside the Modelfile, a relative path otherwise (Ollama resolves both). */
export function pathFrom(modelfileDir: string, file: string): string {
  const rel = relative(modelfileDir, file).split(sep).join('/');
  return rel.startsWith('../') ? rel : `./${rel}`;
}

function parameterText(v: number | string, name: string): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`Modelfile PARAMETER ${name} is not a finite number: ${v}`);
    return String(v);
  }
  return quoteModelfileValue(v, `PARAMETER ${name}`, true);
}

function oneLine(v: string, what: string): string {
  if (/[\r\n]/.test(v) || v.trim() === '') throw new Error(`Modelfile ${what} must be one non-empty line: ${JSON.stringify(v)}`);
  return v;
}

/**
 * Ollama's parser keeps a value bare when it is one line without edge spaces, and strips one pair of
 * `"` or `"""` otherwise; a `"""` inside would end the value early, and characters Go's
 * strconv.IsPrint rejects (controls, format characters such as U+200D) are dropped by it.
 */
export function quoteModelfileValue(v: string, what: string, quoteAlways = false): string {
  checkCarriable(v, what);
  const bare = !/[\r\n]/.test(v) && v.trim() === v && v !== '' && !v.startsWith('"');
  if (bare && !quoteAlways) return v;
  return v.includes('"') ? `"""${v}"""` : `"${v}"`;
}

function tripleQuote(v: string, what: string): string {
  checkCarriable(v, what);
  return `"""${v}"""`;
}

const NOT_CARRIED = /[^\p{L}\p{M}\p{N}\p{P}\p{S} \t\r\n]/u;

function checkCarriable(v: string, what: string): void {
  if (v.includes('"""')) throw new Error(`Modelfile ${what} contains """, which Ollama's Modelfile syntax cannot quote`);
  const bad = NOT_CARRIED.exec(v);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new Error(`Modelfile ${what} contains U+${code} at offset ${bad.index}, which Ollama's Modelfile parser drops`);
  }
}
