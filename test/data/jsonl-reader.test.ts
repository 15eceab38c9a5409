import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readJsonlLines, type JsonlItem } from '../../lib/data/jsonl-reader.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-jsonl-');
async function collect(path: string, maxLineBytes?: number): Promise<JsonlItem[]> {
  const out: JsonlItem[] = [];
  for await (const item of readJsonlLines(path, maxLineBytes ? { maxLineBytes } : {})) out.push(item);
  return out;
}

describe('readJsonlLines', () => {
  it('handles BOM, CRLF, blank lines and a missing final newline, numbering lines from 1', async () => {
    const path = join(dir, 'mixed.jsonl');
    writeFileSync(path, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}\r\n\r\n   \n{"b":"é"}\n{"c":3}')]));
    expect(await collect(path)).toEqual([
      { kind: 'line', lineNumber: 1, text: '{"a":1}' },
      { kind: 'blank', lineNumber: 2 },
      { kind: 'blank', lineNumber: 3 },
      { kind: 'line', lineNumber: 4, text: '{"b":"é"}' },
      { kind: 'line', lineNumber: 5, text: '{"c":3}' },
    ]);
  });

  it('reads gzip by magic bytes whatever the name, and lines spanning many read chunks', async () => {
    const big = 'x'.repeat(3_000_000); // > the 1 MiB read chunk and gunzip chunk
    const text = `{"t":"${big}"}\n{"u":2}\n`;
    const path = join(dir, 'data.bin');
    writeFileSync(path, gzipSync(text));
    const items = await collect(path);
    expect(items.map((i) => (i.kind === 'line' ? i.text.length : -1))).toEqual([big.length + 8, 7]);
  });

  it('reports invalid UTF-8 and overlong lines with their numbers and goes on', async () => {
    const path = join(dir, 'bad.jsonl');
    writeFileSync(path, Buffer.concat([Buffer.from('{"ok":1}\n{"bad":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n'), Buffer.from(`{"long":"${'y'.repeat(5000)}"}\n{"ok":2}\n`)]));
    const items = await collect(path, 1024);
    expect(items.map((i) => [i.lineNumber, i.kind === 'error' ? i.reason : i.kind])).toEqual([
      [1, 'line'],
      [2, 'invalid-utf8'],
      [3, 'line-too-long'],
      [4, 'line'],
    ]);
    expect(items[1]).toMatchObject({ message: 'invalid UTF-8 at byte 8' });
  });
});
