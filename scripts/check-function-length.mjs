#!/usr/bin/env node
// A reader should see a function in one screen: CI fails on any function in lib/ longer than
// MAX_FUNCTION_LINES (`node scripts/check-function-length.mjs [dir] [max]`).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const MAX_FUNCTION_LINES = 80;

function sourceFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

function functionName(node) {
  if (node.name && ts.isIdentifier(node.name)) return node.name.text;
  if (node.name) return node.name.getText();
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) return parent.name.text;
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText();
  return '(anonymous)';
}

/** Functions in one source text whose body spans more than `max` lines. */
export function longFunctions(fileName, text, max = MAX_FUNCTION_LINES) {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found = [];
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line + 1;
      const lines = end - start + 1;
      if (lines > max) found.push({ name: functionName(node), line: start, lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

export function findLongFunctions(root, max = MAX_FUNCTION_LINES) {
  return sourceFiles(root).flatMap((file) =>
    longFunctions(file, readFileSync(file, 'utf8'), max).map((f) => ({ ...f, file: relative(root, file) })),
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'lib');
  const max = Number(process.argv[3] ?? MAX_FUNCTION_LINES);
  const long = findLongFunctions(root, max);
  for (const f of long) console.error(`${join(root, f.file)}:${f.line}: ${f.name} is ${f.lines} lines (at most ${max})`);
  if (long.length > 0) process.exitCode = 1;
}
