/**
 * Every ```ts and ```js example in README.md parses by the rules of the oldest Node that
 * package.json's `engines` allows (20: no `using` declarations, no decorators), passes
 * `node --check` under the current Node, and runs to completion as a user runs it: as an ES module
 * importing 'mlx-qlora' (the built package, through node_modules/mlx-qlora), printing what its
 * comments say it prints.
 *
 * Examples run in a fresh working folder that holds a `train.yaml` for a two-step run on a tiny
 * model (so `train('train.yaml', …)` runs as written). Paths an example names that cannot exist
 * here are rewritten through `substitutions` below, so the README keeps what a user types: the
 * model name `dolphin-mistral:7b` becomes the tiny model's folder.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';
import { ensureBuiltPackage, repoRoot } from '../smoke/built-cli.js';

const run = promisify(execFile);
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const engines = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
const oldestNodeMajor = Number(/(\d+)/.exec(engines)?.[1]);

interface Example {
  index: number;
  lang: string;
  code: string;
}

const examples: Example[] = [...readme.matchAll(/```(ts|js|typescript|javascript)\n([\s\S]*?)```/g)].map((m, index) => ({
  index,
  lang: m[1]!,
  code: m[2]!,
}));

/** Syntax the oldest supported Node cannot parse, found in the TypeScript AST of an example. */
function tooNewSyntax(code: string): string[] {
  const source = ts.createSourceFile('example.ts', code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclarationList(node) && (node.flags & ts.NodeFlags.Using) !== 0 && oldestNodeMajor < 24) {
      found.push(`'${node.getText(source).split('=')[0]!.trim()}': using declarations need Node 24`);
    }
    if (ts.isDecorator(node)) found.push(`'${node.getText(source)}': decorators are not in any Node release`);
    ts.forEachChild(node, visit);
  };
  visit(source);
  const parseErrors = (source as unknown as { parseDiagnostics: ts.Diagnostic[] }).parseDiagnostics;
  for (const d of parseErrors) found.push(`parse error: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  return found;
}

/** The example as the module a user would save: types stripped, nothing lowered. */
function asModule(code: string): string {
  return ts.transpileModule(code, { compilerOptions: { target: ts.ScriptTarget.ESNext, module: ts.ModuleKind.ESNext } }).outputText;
}

/** The text each `console.log(…) // text` line promises to print. */
function promisedOutput(code: string): string[] {
  return [...code.matchAll(/console\.log\(.*\);?\s*\/\/\s*(.+)$/gm)].map((m) => m[1]!.trim());
}

describe('README examples', () => {
  let fx: TrainFixture;
  let work: string;
  let substitutions: Array<[string, string]>;

  beforeAll(async () => {
    ensureBuiltPackage();
    fx = await makeTrainFixture(8);
    work = tempDir('mlxq-readme-');
    // The package as a dependency of the user's project.
    mkdirSync(join(work, 'node_modules'));
    symlinkSync(repoRoot, join(work, 'node_modules', 'mlx-qlora'), 'dir');
    const config = { ...shortRunConfig(fx, join(work, 'runs', 'readme')), checkpoint: { every_steps: 0, keep_last: 1 } };
    writeFileSync(join(work, 'train.yaml'), stringify({ ...config, training: { ...config.training, max_steps: 2 } }));
    substitutions = [['dolphin-mistral:7b', fx.modelDir]];
  }, 600_000);
  afterAll(async () => {
    await fx?.cleanup();
  });

  it('has examples to check', () => {
    expect(examples.length).toBeGreaterThanOrEqual(2);
    expect(oldestNodeMajor).toBeGreaterThanOrEqual(20);
  });

  it.each(examples.map((e) => [e.index, e] as const))(`example %i parses by the oldest supported Node's rules`, (_i, example) => {
    expect(tooNewSyntax(example.code)).toEqual([]);
    const file = join(tempDir('mlxq-readme-check-'), 'example.mjs');
    writeFileSync(file, asModule(example.code));
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it.each(examples.map((e) => [e.index, e] as const))('example %i runs as a user runs it', async (_i, example) => {
    let code = asModule(example.code);
    for (const [from, to] of substitutions) code = code.replaceAll(from, to);
    const file = join(work, `example-${example.index}.mjs`);
    writeFileSync(file, code);
    const { stdout } = await run(process.execPath, [file], { cwd: work, timeout: 300_000, maxBuffer: 16 << 20 });
    for (const text of promisedOutput(example.code)) expect(stdout).toContain(text);
    if (example.code.includes("train('train.yaml'")) {
      // One `step loss` line per step of the two-step run.
      expect(stdout.trim().split('\n').filter((l) => /^\d+ \d+(\.\d+)?(e-?\d+)?$/.test(l.trim()))).toHaveLength(2);
    }
  }, 600_000);
});

describe('the Node-20 syntax check', () => {
  it('finds what the README used to show', () => {
    expect(tooNewSyntax('const a = 1;\nusing c = await matmul(a, a);\n')).toEqual(["'using c': using declarations need Node 24"]);
    expect(tooNewSyntax('await using r = open();')).toHaveLength(1);
    expect(tooNewSyntax('const ok = 1;')).toEqual([]);
  });
});
