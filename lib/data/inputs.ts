/**
 * Expands `--input` paths (files or folders, searched recursively for .jsonl / .jsonl.gz / .ndjson)
 * and decides each file's record format: the override if given, else what most of its first lines
 * look like.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { detectFileFormat } from './formats/index.js';
import type { JsonObject } from './formats/shared.js';
import type { FieldMapping } from './field-mapping.js';
import { readJsonlLines } from './jsonl-reader.js';
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

function expand(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`${path}: no such file or folder`);
  }
  if (st.isFile()) return [path];
  const out: string[] = [];
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...expand(full));
    else if (DATA_FILE.test(entry.name)) out.push(full);
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
): Promise<InputFile[]> {
  const files = [...new Set(paths.flatMap(expand))];
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
