/**
 * `--format` overrides: one format for every input (`--format sharegpt`), and/or per file
 * (`--format exports/old.jsonl=sharegpt`, `--format 'quality*.jsonl=iceburg-quality'`). A pattern
 * without `/` is matched against the file name; one with `/` against the end of the path, whole
 * segments (`legacy/*.jsonl` matches `data/legacy/a.jsonl`), or against the whole path when it
 * starts with `/`, `./` or `../` (absolute, or relative to the working folder). `*` and `?` stay
 * within a segment, `**` crosses them. The first matching pattern wins, then the global format,
 * then detection.
 */
import { basename, isAbsolute, relative, resolve, sep } from 'node:path';
import { RECORD_FORMATS, type RecordFormat } from './record.js';

export interface FormatOverride {
  pattern: string;
  format: RecordFormat;
}

export function isRecordFormat(value: string): value is RecordFormat {
  return (RECORD_FORMATS as readonly string[]).includes(value);
}

/** `FORMAT` or `PATTERN=FORMAT` (split at the last `=`, so a path may contain one). */
export function parseFormatSpec(spec: string): { pattern?: string; format: RecordFormat } {
  const at = spec.lastIndexOf('=');
  const format = at < 0 ? spec : spec.slice(at + 1);
  const pattern = at < 0 ? undefined : spec.slice(0, at);
  if (!isRecordFormat(format)) throw new Error(`"${format}" is not a record format (${RECORD_FORMATS.join(', ')})`);
  if (pattern === '') throw new Error(`"${spec}": the file pattern before "=" is empty`);
  return pattern === undefined ? { format } : { pattern, format };
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*' && glob[i + 1] === '*') {
      // `**/` also matches no folder at all.
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const toPosix = (p: string) => p.split(sep).join('/');

function matches(pattern: string, file: string): boolean {
  const posixPattern = toPosix(pattern);
  if (!posixPattern.includes('/')) return globToRegExp(posixPattern).test(basename(file));
  const abs = toPosix(resolve(file));
  if (isAbsolute(pattern)) return globToRegExp(toPosix(resolve(pattern))).test(abs);
  if (/^\.\.?\//.test(posixPattern)) return globToRegExp(toPosix(relative(process.cwd(), resolve(pattern)))).test(toPosix(relative(process.cwd(), abs)));
  const re = globToRegExp(posixPattern);
  // Any tail of the path that starts at a segment boundary.
  for (let at = abs.indexOf('/'); at >= 0; at = abs.indexOf('/', at + 1)) if (re.test(abs.slice(at + 1))) return true;
  return false;
}

/** Chooses each file's forced format; `unused()` lists patterns that matched no file (likely typos). */
export function formatChooser(global: RecordFormat | undefined, overrides: readonly FormatOverride[]) {
  const used = new Set<FormatOverride>();
  return {
    choose(file: string): RecordFormat | undefined {
      const hit = overrides.find((o) => matches(o.pattern, file));
      if (hit) used.add(hit);
      return hit?.format ?? global;
    },
    unused: (): FormatOverride[] => overrides.filter((o) => !used.has(o)),
  };
}
