/**
 * Which files prepare reads, and as what: an output folder inside the input folder (and any other
 * prepared dataset there) is not read back, and --format can be given per file or glob.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { formatChooser, globToRegExp, parseFormatSpec } from '../../lib/data/format-overrides.js';
import { resolveInputs } from '../../lib/data/inputs.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const chatLine = (i: number) => JSON.stringify({ messages: [{ role: 'user', content: `Question ${i}?` }, { role: 'assistant', content: `Answer number ${i}.` }] });

describe('the output folder inside the input folder', () => {
  it('is not read back on the next run, nor is another prepared dataset; rejections and emits stay out', async () => {
    const dir = tempDir('mlxq-inputs-');
    writeFileSync(join(dir, 'export.jsonl'), `${[chatLine(1), chatLine(2), '{"broken', chatLine(3)].join('\n')}\n`);
    const options = { inputs: [dir], emit: ['chatml' as const, 'sharegpt' as const], split: { valid: 0, test: 0 } };
    const first = await prepareDataset({ ...options, outDir: join(dir, 'prepared') }, { tokenizer: chatmlModel() });
    // An older dataset elsewhere in the folder, with its own rejections.jsonl and emit/*.jsonl.
    await prepareDataset({ ...options, outDir: join(dir, 'archive', 'prepared-2024') }, { tokenizer: chatmlModel() });
    const again = await prepareDataset({ ...options, outDir: join(dir, 'prepared') }, { tokenizer: chatmlModel() });
    expect(again.manifest.sources.map((s) => basename(s.path))).toEqual(['export.jsonl']);
    expect(again.report.lines).toBe(first.report.lines);
    expect(again.manifest.splits.train.records).toBe(3);
    expect(again.report.errors).toEqual({ 'broken-json': 1 });
  });

  it('a folder named on the command line is read even if it is a prepared dataset; one inside --out is refused', async () => {
    const dir = tempDir('mlxq-inputs-');
    writeFileSync(join(dir, 'export.jsonl'), `${chatLine(1)}\n`);
    await prepareDataset({ inputs: [dir], outDir: join(dir, 'out'), emit: ['chatml'], split: { valid: 0, test: 0 } }, { tokenizer: chatmlModel() });
    // Its empty rejections.jsonl and valid/test emits have nothing to read and are passed over.
    const emitted = await resolveInputs([join(dir, 'out')], resolveFieldMapping());
    expect(emitted.map((f) => [basename(f.path), f.format])).toEqual([['train.chatml.jsonl', 'chatml']]);
    await expect(resolveInputs([join(dir, 'out', 'emit')], resolveFieldMapping(), undefined, { exclude: [join(dir, 'out')] })).rejects.toThrow(
      /inside the output folder/,
    );
  });
});

describe('--format per file', () => {
  it('parses FORMAT and PATTERN=FORMAT, and rejects unknown formats', () => {
    expect(parseFormatSpec('sharegpt')).toEqual({ format: 'sharegpt' });
    expect(parseFormatSpec('data/a=b.jsonl=alpaca')).toEqual({ pattern: 'data/a=b.jsonl', format: 'alpaca' });
    expect(() => parseFormatSpec('x.jsonl=sharegtp')).toThrow(/"sharegtp" is not a record format/);
    expect(() => parseFormatSpec('=chatml')).toThrow(/pattern before "=" is empty/);
  });

  it('globs: * and ? stay in a segment, ** crosses them; a pattern without / matches the file name', () => {
    expect(globToRegExp('*.jsonl').test('a.jsonl')).toBe(true);
    expect(globToRegExp('*.jsonl').test('d/a.jsonl')).toBe(false);
    expect(globToRegExp('exports/**/q?.jsonl').test('exports/2025/01/q1.jsonl')).toBe(true);
    expect(globToRegExp('exports/**/q?.jsonl').test('exports/q1.jsonl')).toBe(true);
    expect(globToRegExp('a.jsonl').test('aXjsonl')).toBe(false);
    const chooser = formatChooser('chatml', [
      { pattern: 'old-*.jsonl', format: 'sharegpt' },
      { pattern: '/never/there.jsonl', format: 'text' },
    ]);
    expect(chooser.choose('/data/x/old-2024.jsonl')).toBe('sharegpt');
    expect(chooser.choose('/data/x/new.jsonl')).toBe('chatml');
    expect(chooser.unused()).toEqual([{ pattern: '/never/there.jsonl', format: 'text' }]);
  });

  it('overrides detection for the files it names; the rest are detected (or take the global format)', async () => {
    const dir = tempDir('mlxq-format-');
    mkdirSync(join(dir, 'legacy'));
    writeFileSync(join(dir, 'chat.jsonl'), `${chatLine(1)}\n`);
    // Lines with both shapes: detection reads them as completions, the user wants the plain text.
    writeFileSync(join(dir, 'legacy', 'mixed.jsonl'), `${JSON.stringify({ prompt: 'p', completion: 'c', text: 'The whole document, trained as is.' })}\n`);
    expect((await resolveInputs([join(dir, 'legacy')], resolveFieldMapping())).map((f) => f.format)).toEqual(['completion']);
    const { manifest, report } = await prepareDataset(
      { inputs: [dir], outDir: join(dir, 'out'), formatByFile: [{ pattern: 'legacy/*.jsonl', format: 'text' }], split: { valid: 0, test: 0 } },
      { tokenizer: chatmlModel() },
    );
    const byName = Object.fromEntries(manifest.sources.map((s) => [basename(s.path), [s.format, s.formatDetected]]));
    expect(byName).toEqual({ 'chat.jsonl': ['chatml', true], 'mixed.jsonl': ['text', false] });
    expect(report.recordsByFormat).toEqual({ chatml: 1, text: 1 });
    await expect(
      prepareDataset({ inputs: [dir], outDir: join(dir, 'out2'), formatByFile: [{ pattern: 'legacy/typo*.jsonl', format: 'sharegpt' }] }, { tokenizer: chatmlModel() }),
    ).rejects.toThrow('--format legacy/typo*.jsonl=sharegpt: matches no input file');
  });
});
