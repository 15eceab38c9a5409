#!/usr/bin/env node
// The folders of lib/ form a one-way stack: a module may import from its own folder and from
// folders below it, never from one above. A back-import is how package cycles start, so CI runs
// this over lib/ and fails on the first one (`node scripts/check-layers.mjs [dir]`).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom first. Top-level files of lib/ are named by their file name. */
export const LAYERS = [
  ['native.ts'],
  ['tensor.ts', 'device.ts'],
  ['io', 'stats'],
  ['gguf'],
  ['config'],
  ['source'],
  ['tokenizer'],
  ['data'],
  ['model'],
  ['train'],
  ['export'],
  ['eval'],
  ['rollout'],
  ['demo'],
  ['cli'],
  ['index.ts'],
];

const IMPORT_PATTERN = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

/** The layer unit of a file under root: its first path segment (a folder, or a top-level file). */
function unitOf(root, file) {
  const first = relative(root, file).split(sep)[0];
  return first;
}

function rankOf(unit) {
  const rank = LAYERS.findIndex((layer) => layer.includes(unit));
  return rank === -1 ? undefined : rank;
}

function sourceFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of one file's text, with their 1-based line numbers. */
export function relativeImports(text) {
  const found = [];
  for (const match of text.matchAll(IMPORT_PATTERN)) {
    const line = text.slice(0, match.index).split('\n').length;
    found.push({ specifier: match[1], line });
  }
  return found;
}

/** Every import under `root` that reaches a higher layer, or a folder the stack does not name. */
export function findLayerViolations(root) {
  const absRoot = resolve(root);
  const violations = [];
  for (const file of sourceFiles(absRoot)) {
    const from = unitOf(absRoot, file);
    const fromRank = rankOf(from);
    if (fromRank === undefined) {
      violations.push({ file: relative(absRoot, file), line: 1, message: `'${from}' is not in the layer list (scripts/check-layers.mjs)` });
      continue;
    }
    for (const { specifier, line } of relativeImports(readFileSync(file, 'utf8'))) {
      const target = resolve(dirname(file), specifier);
      if (!target.startsWith(absRoot + sep)) continue;
      const to = unitOf(absRoot, target.replace(/\.js$/, '.ts'));
      if (to === from) continue;
      const toRank = rankOf(to);
      if (toRank === undefined || toRank > fromRank) {
        violations.push({ file: relative(absRoot, file), line, message: `${from} imports ${to} ('${specifier}'), which is above it` });
      } else if (toRank === fromRank) {
        violations.push({ file: relative(absRoot, file), line, message: `${from} imports ${to} ('${specifier}'), a sibling on the same layer` });
      }
    }
  }
  return violations;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'lib');
  const violations = findLayerViolations(root);
  for (const v of violations) console.error(`${join(root, v.file)}:${v.line}: ${v.message}`);
  if (violations.length > 0) {
    console.error(`${violations.length} import(s) run against the layer order: ${LAYERS.map((l) => l.join('|')).join(' → ')}`);
    process.exitCode = 1;
  }
}
