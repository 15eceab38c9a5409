/**
 * Expands `--input` paths (files or folders, searched recursively for .jsonl / .jsonl.gz / .ndjson)
 * and decides each file's record format: the override if given, else what most of its first lines
 * look like. A folder search skips what prepare writes (the output folder, and any prepared
 * dataset: its rejections.jsonl and emit/*.jsonl would otherwise come back as input next month).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { detectFileFormat } from './formats/index.js';
import type { JsonObject } from './formats/shared.js';
import type { FieldMapping } from './field-mapping.js';
import { readJsonlLines } from './jsonl-reader.js';
import { MANIFEST_FILE, MANIFEST_KIND } from './manifest.js';
import type { RecordFormat } from './record.js';

export interface InputFile {
  path: string;
  format: RecordFormat;
  /** False when the format came from an override. */
  detected: boolean;
  bytes: number;
}

const DATA_FILE = /\.(jsonl|ndjson)(\.gz)?$/i;
const SAMPLE_LINES = 50;

export interface ResolveInputsOptions {
  /** Folders never searched (prepare's output folder). */
  exclude?: readonly string[];
}

function isInside(path: string, folder: string): boolean {
  const rel = relative(resolve(folder), resolve(path));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function isPreparedDataset(folder: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(folder, MANIFEST_FILE), 'utf8')) as { kind?: unknown }).kind === MANIFEST_KIND;
  } catch {
    return false;
  }
}

function expand(path: string, exclude: readonly string[], top = true): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`${path}: no such file or folder`);
  }
  const excludedBy = exclude.find((folder) => isInside(path, folder));
  if (excludedBy !== undefined) {
    if (top) throw new Error(`${path}: this input is inside the output folder ${excludedBy}, which prepare rewrites`);
    return [];
  }
  if (st.isFile()) return [path];
  // A folder named on the command line is read even if it is a prepared dataset: that was asked for.
  if (!top && isPreparedDataset(path)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...expand(full, exclude, false));
    // An empty file has no records and no format to detect (an export split with nothing in it).
    else if (DATA_FILE.test(entry.name) && statSync(full).size > 0) out.push(full);
  }
  return out;
}

export async function sampleObjects(path: string, limit = SAMPLE_LINES): Promise<JsonObject[]> {
  const sample: JsonObject[] = [];
  let seen = 0;
  for await (const item of readJsonlLines(path)) {
    if (item.kind !== 'line') continue;
    if (++seen > limit) break;
    try {
      const v: unknown = JSON.parse(item.text);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) sample.push(v as JsonObject);
    } catch {
      // Broken lines are reported by the main pass; detection just skips them.
    }
  }
  return sample;
}

export async function resolveInputs(
  paths: readonly string[],
  mapping: FieldMapping,
  override?: RecordFormat | ((path: string) => RecordFormat | undefined),
  options: ResolveInputsOptions = {},
): Promise<InputFile[]> {
  const files = [...new Set(paths.flatMap((p) => expand(p, options.exclude ?? [])))];
  if (files.length === 0) throw new Error(`no .jsonl or .jsonl.gz files found in ${paths.join(', ')}`);
  const out: InputFile[] = [];
  for (const path of files) {
    const forced = typeof override === 'function' ? override(path) : override;
    const bytes = statSync(path).size;
    if (forced) {
      out.push({ path, format: forced, detected: false, bytes });
      continue;
    }
    const format = detectFileFormat(await sampleObjects(path), mapping);
    if (!format) throw new Error(`${path}: cannot tell the record format from its first ${SAMPLE_LINES} lines; pass --format`);
    out.push({ path, format, detected: true, bytes });
  }
  // Quality metrics are joined onto conversations, so they are read first.
  return [...out.filter((f) => f.format === 'iceburg-quality'), ...out.filter((f) => f.format !== 'iceburg-quality')];
}
