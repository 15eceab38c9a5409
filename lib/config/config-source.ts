import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { ConfigError } from './config-error.js';
import type { KeyPath } from './zod-problems.js';

/** A config file's parsed value, plus a way to find the line a key path was written on. */
export interface ConfigSource {
  value: unknown;
  lineOf(path: KeyPath): number | undefined;
}

export type ConfigFormat = 'yaml' | 'json';

export function formatFromFileName(file: string): ConfigFormat {
  return /\.json$/i.test(file) ? 'json' : 'yaml';
}

/**
 * Parses YAML or JSON text. JSON is checked with JSON.parse first (its error messages fit JSON,
 * and it must be strict JSON), then read again as YAML, a superset of JSON, only to learn where
 * each key sits. Duplicate keys are errors in both, where JSON.parse would keep the last one.
 */
export function parseConfigSource(text: string, format: ConfigFormat, file: string | undefined): ConfigSource {
  if (format === 'json') {
    try {
      JSON.parse(text);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const position = /position (\d+)/.exec(message);
      const line = position ? lineAtOffset(text, Number(position[1])) : undefined;
      throw new ConfigError([{ message: `not valid JSON: ${message}`, ...(line ? { line } : {}) }], file);
    }
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const [firstError] = document.errors;
  if (firstError) {
    const line = firstError.linePos?.[0]?.line;
    // yaml appends "at line L, column C:" and a source excerpt; the line is reported separately.
    const summary = (firstError.message.split('\n')[0] ?? '').replace(/\s*at line \d+, column \d+:?$/, '');
    throw new ConfigError(
      [{ message: `not valid ${format === 'json' ? 'JSON' : 'YAML'}: ${summary}`, ...(line ? { line } : {}) }],
      file,
    );
  }
  return {
    value: document.toJS({ maxAliasCount: 100 }) as unknown,
    lineOf(path) {
      const node = nodeAt(document.contents, path);
      const offset = node?.range?.[0];
      return offset === undefined ? undefined : lineCounter.linePos(offset).line;
    },
  };
}

/**
 * The node for a key path: the key itself for a mapping entry (so an unknown key points at its own
 * line), or the deepest existing parent when the path is missing (a missing key points at its
 * section). The top level has no useful line.
 */
function nodeAt(root: Node | null, path: KeyPath): Node | undefined {
  let current: Node | null = root;
  let located: Node | undefined;
  for (const segment of path) {
    if (isMap(current)) {
      const pair = current.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(segment));
      if (!pair) break;
      located = isScalar(pair.key) ? pair.key : located;
      current = (pair.value as Node | null) ?? null;
    } else if (isSeq(current) && typeof segment === 'number') {
      const item = current.items[segment];
      if (!item || !(isScalar(item) || isMap(item) || isSeq(item))) break;
      located = item;
      current = item;
    } else {
      break;
    }
  }
  return located;
}

function lineAtOffset(text: string, offset: number): number {
  let line = 1;
  for (let index = 0; index < offset && index < text.length; index++) if (text[index] === '\n') line++;
  return line;
}
