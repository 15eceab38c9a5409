import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM scripts without type declarations
import { findLayerViolations } from '../../scripts/check-layers.mjs';
// @ts-expect-error plain ESM scripts without type declarations
import { findLongFunctions, longFunctions } from '../../scripts/check-function-length.mjs';
import { tempDir } from '../helpers/temp-dir.js';

interface Violation {
  file: string;
  line: number;
  message: string;
}
interface LongFunction {
  name: string;
  line: number;
  lines: number;
  file?: string;
}

const lib = join(import.meta.dirname, '..', '..', 'lib');

function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
}

describe('layer order of lib/', () => {
  it('has no import that runs back up the stack', () => {
    const violations = findLayerViolations(lib) as Violation[];
    expect(violations.map((v) => `${v.file}:${v.line}: ${v.message}`)).toEqual([]);
  });

  it('finds a back-import, a dynamic one and an unknown folder', () => {
    const root = tempDir('layers-');
    writeTree(root, {
      'native.ts': 'export const x = 1;\n',
      'model/load.ts': "import { x } from '../native.js';\nimport { y } from './other.js';\nexport const m = x + y;\n",
      'model/other.ts': 'export const y = 2;\n',
      'tokenizer/vocab.ts': "import type { Foo } from '../model/load.js';\nexport type V = Foo;\n",
      'data/read.ts': "const late = await import('../train/run.js');\nexport { late };\n",
      'train/run.ts': "export { m } from '../model/load.js';\n",
      'misc/thing.ts': 'export const z = 3;\n',
    });
    const found = (findLayerViolations(root) as Violation[]).map((v) => `${v.file}:${v.line}`).sort();
    expect(found).toEqual(['data/read.ts:1', 'misc/thing.ts:1', 'tokenizer/vocab.ts:1']);
  });
});

describe('function length in lib/', () => {
  it('has no function over 80 lines', () => {
    const long = (findLongFunctions(lib) as LongFunction[]).map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`);
    expect(long).toEqual([]);
  });

  it('measures functions, methods and arrow functions by their lines', () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join('\n');
    const text = [
      `function short() {\n${body(3)}\n}`,
      `export function long() {\n${body(79)}\n}`,
      `class C {\n  method() {\n${body(78)}\n  }\n}`,
      `const arrow = () => {\n${body(80)}\n};`,
    ].join('\n');
    const found = (longFunctions('x.ts', text, 80) as LongFunction[]).map((f) => [f.name, f.lines]);
    expect(found).toEqual([
      ['long', 81],
      ['arrow', 82],
    ]);
  });
});
