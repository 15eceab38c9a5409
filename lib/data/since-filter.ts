/**
 * Which records a prepare run takes, beyond the quality and length filters:
 * - `since`: only records whose content hash is not in an earlier prepared dataset (monthly
 *   retraining on a cumulative export takes just the new conversations);
 * - `replay`: that fraction of the earlier records back, chosen by a hash of (seed, content) so the
 *   same export gives the same choice, to keep the model from forgetting;
 * - `where`: metadata conditions (`category=code`, dotted paths, all must hold) for specialised
 *   variants.
 * Every prepared dataset records the content hashes it has seen (its own records plus its --since
 * dataset's) in content-hashes.bin beside manifest.json: sorted raw sha256 digests, 32 bytes each.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { writeFileAtomic } from '../io/atomic-file.js';
import { contentHash } from './content-hash.js';
import { readJsonlLines, type JsonlItem } from './jsonl-reader.js';
import { MANIFEST_FILE } from './manifest.js';
import type { DataRecord } from './record.js';

export const CONTENT_HASHES_FILE = 'content-hashes.bin';
export const SELECTION_FILE = 'selection.json';
const DIGEST_BYTES = 32;

const whereSchema = z.string().regex(/^[^=\s]+=.*$/, 'expected FIELD=VALUE (FIELD may be a dotted path)');

export const recordSelectionSchema = z.object({
  /** An earlier prepared folder, or its manifest.json. */
  since: z.string().min(1).optional(),
  replay: z.number().min(0).max(1).default(0),
  replaySeed: z.int().min(0).default(0),
  where: z.array(whereSchema).default([]),
});
export type RecordSelectionInput = z.input<typeof recordSelectionSchema>;

export interface SelectionCounts {
  since: string | null;
  where: string[];
  /** Records left out because an earlier dataset had them. */
  notNew: number;
  /** Earlier records taken back by --replay. */
  replayed: number;
  /** Records left out by --where. */
  notMatchingWhere: number;
  /** Records taken that the earlier dataset did not have. */
  new: number;
}

/** The folder of a prepared dataset given as the folder or its manifest.json. */
export function preparedFolderOf(path: string): string {
  if (existsSync(path) && statSync(path).isDirectory()) return path;
  if (basename(path) === MANIFEST_FILE) return dirname(path);
  throw new Error(`--since ${path}: expected a prepared dataset folder or its ${MANIFEST_FILE}`);
}

/** The content hashes a prepared dataset recorded, as hex strings. */
export function readContentHashes(dir: string): Set<string> {
  const file = join(dir, CONTENT_HASHES_FILE);
  if (!existsSync(join(dir, MANIFEST_FILE))) throw new Error(`--since ${dir}: no ${MANIFEST_FILE}; not a prepared dataset`);
  if (!existsSync(file)) throw new Error(`--since ${dir}: no ${CONTENT_HASHES_FILE} (prepared before content hashes were recorded); prepare that data again`);
  const bytes = readFileSync(file);
  if (bytes.length % DIGEST_BYTES !== 0) throw new Error(`${file}: ${bytes.length} bytes is not a whole number of ${DIGEST_BYTES}-byte hashes`);
  const hashes = new Set<string>();
  for (let at = 0; at < bytes.length; at += DIGEST_BYTES) hashes.add(bytes.toString('hex', at, at + DIGEST_BYTES));
  return hashes;
}

/** Uniform in [0, 1) from the seed and a record's content hash alone. */
export function replayUnit(seed: number, hex: string): number {
  return createHash('sha256').update(`${seed}:${hex}`).digest().readUIntBE(0, 6) / 2 ** 48;
}

interface WhereCondition {
  path: string[];
  value: string;
  text: string;
}

function parseWhere(text: string): WhereCondition {
  const at = text.indexOf('=');
  return { path: text.slice(0, at).split('.'), value: text.slice(at + 1), text };
}

function fieldAt(value: unknown, path: readonly string[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** A field matches when it (or, for a list, one of its items) prints as the value. */
function matches(field: unknown, value: string): boolean {
  if (Array.isArray(field)) return field.some((item) => matches(item, value));
  return (typeof field === 'string' || typeof field === 'number' || typeof field === 'boolean') && String(field) === value;
}

/** A field path is looked up at the top level of the line, then inside its `metadata` object. */
export function lineMatches(raw: unknown, conditions: readonly WhereCondition[]): boolean {
  return conditions.every((c) => {
    const top = fieldAt(raw, c.path);
    return matches(top !== undefined ? top : fieldAt(raw, ['metadata', ...c.path]), c.value);
  });
}

/**
 * The format parsers keep only what training needs, so --where reads each record's line again:
 * a second reader over the same file, moved forward to the line a record came from.
 */
class RawLines {
  private file: string | undefined;
  private lines: AsyncIterator<JsonlItem> | undefined;

  async at(file: string, line: number): Promise<unknown> {
    if (file !== this.file) {
      await this.lines?.return?.();
      this.file = file;
      this.lines = readJsonlLines(file)[Symbol.asyncIterator]();
    }
    for (;;) {
      const next = await this.lines!.next();
      if (next.done) throw new Error(`${file}:${line}: line not found again for --where`);
      if (next.value.lineNumber === line && next.value.kind === 'line') return JSON.parse(next.value.text) as unknown;
    }
  }

  async close(): Promise<void> {
    await this.lines?.return?.();
  }
}

export class RecordSelection {
  private readonly earlier: Set<string>;
  private readonly seen = new Set<string>();
  private readonly conditions: WhereCondition[];
  private readonly raw = new RawLines();
  readonly counts: SelectionCounts;

  constructor(private readonly options: z.output<typeof recordSelectionSchema>) {
    this.earlier = options.since ? readContentHashes(preparedFolderOf(options.since)) : new Set();
    this.conditions = options.where.map(parseWhere);
    this.counts = { since: options.since ?? null, where: options.where, notNew: 0, replayed: 0, notMatchingWhere: 0, new: 0 };
  }

  /** True when the record is left out (counted here, not as a rejection: nothing is wrong with it). */
  async leaveOut(record: DataRecord): Promise<boolean> {
    if (this.conditions.length > 0 && !lineMatches(await this.raw.at(record.source.file, record.source.line), this.conditions)) {
      this.counts.notMatchingWhere++;
      return true;
    }
    const { hex } = contentHash(record.body);
    this.seen.add(hex);
    if (!this.earlier.has(hex)) {
      this.counts.new++;
      return false;
    }
    if (this.options.replay > 0 && replayUnit(this.options.replaySeed, hex) < this.options.replay) {
      this.counts.replayed++;
      return false;
    }
    this.counts.notNew++;
    return true;
  }

  /** Writes the hashes seen (with the earlier dataset's) and the counts beside the manifest. */
  async finish(outDir: string): Promise<SelectionCounts> {
    await this.raw.close();
    const all = [...new Set([...this.earlier, ...this.seen])].sort();
    const bytes = Buffer.alloc(all.length * DIGEST_BYTES);
    all.forEach((hex, i) => bytes.write(hex, i * DIGEST_BYTES, 'hex'));
    await writeFileAtomic(join(outDir, CONTENT_HASHES_FILE), bytes);
    await writeFileAtomic(join(outDir, SELECTION_FILE), `${JSON.stringify(this.counts, null, 2)}\n`);
    return this.counts;
  }
}

export function openRecordSelection(input: RecordSelectionInput = {}): RecordSelection {
  return new RecordSelection(recordSelectionSchema.parse(input));
}

export function formatSelection(c: SelectionCounts): string {
  const parts = [`${c.new} new records`];
  if (c.since) parts.push(`${c.notNew} already in ${c.since} left out`, `${c.replayed} earlier records replayed`);
  if (c.where.length > 0) parts.push(`${c.notMatchingWhere} not matching --where ${c.where.join(' ')} left out`);
  return `Selection: ${parts.join(', ')}`;
}

/** The counts a prepare run wrote beside its manifest. */
export function readSelection(outDir: string): SelectionCounts {
  return JSON.parse(readFileSync(join(outDir, SELECTION_FILE), 'utf8')) as SelectionCounts;
}
