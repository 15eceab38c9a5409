import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { formatFromFileName, parseConfigSource, type ConfigFormat } from './config-source.js';
import { allowedConfigKeys, trainConfigSchema, type TrainConfig, type TrainConfigInput } from './train-config.js';
import { problemsFromIssues, type KeyPath } from './zod-problems.js';

export interface ParseConfigOptions {
  /** Folder that relative paths are resolved against; defaults to the current directory. */
  baseDir?: string;
  /** Named in error messages. */
  file?: string;
  /** Where a key path was written, for error messages. */
  lineOf?: (path: KeyPath) => number | undefined;
}

/**
 * Loads a training config from a YAML or JSON file (by path or file URL) or takes it as an object.
 * Relative paths in a file resolve against the file's folder, so a config works from any cwd.
 * Throws ConfigError naming the file, line and key of every problem.
 */
export async function loadTrainConfig(
  source: string | URL | TrainConfigInput,
  options: { baseDir?: string } = {},
): Promise<TrainConfig> {
  if (typeof source !== 'string' && !(source instanceof URL)) return parseTrainConfig(source, options);
  const file = source instanceof URL ? fileURLToPath(source) : path.resolve(source);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(error);
    throw new ConfigError([{ message: `cannot read the config file: ${reason}` }], file);
  }
  return parseTrainConfigText(text, { file, baseDir: options.baseDir ?? path.dirname(file) });
}

/** Parses config text; the format comes from the file name (.json, else YAML) unless given. */
export function parseTrainConfigText(
  text: string,
  options: { file?: string; baseDir?: string; format?: ConfigFormat } = {},
): TrainConfig {
  const format = options.format ?? (options.file ? formatFromFileName(options.file) : 'yaml');
  const source = parseConfigSource(text, format, options.file);
  const baseDir = options.baseDir ?? (options.file ? path.dirname(path.resolve(options.file)) : process.cwd());
  // An empty file is an empty config: list what it lacks rather than "expected an object, got null".
  return parseTrainConfig(source.value ?? {}, { baseDir, lineOf: source.lineOf, ...(options.file ? { file: options.file } : {}) });
}

/** Validates a config object, fills defaults and resolves its paths. */
export function parseTrainConfig(input: unknown, options: ParseConfigOptions = {}): TrainConfig {
  const result = trainConfigSchema.safeParse(input);
  if (!result.success) {
    const problems = problemsFromIssues(result.error.issues, input, allowedConfigKeys).map((problem): ConfigProblem => {
      const line = options.lineOf?.(problem.path);
      return line ? { ...problem, line } : problem;
    });
    // Report in file order, so the list reads top to bottom like the file.
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(problems, options.file);
  }
  return resolveConfigPaths(result.data, options.baseDir ?? process.cwd());
}

function resolveConfigPaths(config: TrainConfig, baseDir: string): TrainConfig {
  const resolve = (file: string): string => resolvePath(file, baseDir);
  const resolveAll = <T extends string | string[] | undefined>(files: T): T =>
    (Array.isArray(files) ? files.map(resolve) : typeof files === 'string' ? resolve(files) : files) as T;
  return {
    ...config,
    model: resolveModel(config.model, baseDir),
    data: { ...config.data, train: resolveAll(config.data.train), valid: resolveAll(config.data.valid), test: resolveAll(config.data.test) },
    output: resolve(config.output),
  };
}

function resolvePath(file: string, baseDir: string): string {
  if (file === '~' || file.startsWith('~/')) return path.join(homedir(), file.slice(1));
  return path.resolve(baseDir, file);
}

/**
 * `model` is a path or an Ollama name ("dolphin-mistral:7b", "hf.co/user/repo:Q4_K_M"). It is
 * taken as a path when it looks like one (./, ../, /, ~, or a .gguf file) or names something that
 * exists next to the config; anything else is left for the Ollama resolver.
 */
function resolveModel(model: string, baseDir: string): string {
  const looksLikePath = /^(\.{1,2}[/\\]|[/\\]|~([/\\]|$)|[A-Za-z]:[/\\])/.test(model) || /\.gguf$/i.test(model);
  if (looksLikePath) return resolvePath(model, baseDir);
  const candidate = path.resolve(baseDir, model);
  return existsSync(candidate) ? candidate : model;
}
