/**
 * `mlx-qlora prepare` flags: values the options schema would refuse are refused by the flag's own
 * parser with a message naming the flag (not a ZodError dump), and --format takes per-file values.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { register, splitFormatSpecs } from '../../lib/cli/commands/prepare.js';
import { readManifest } from '../../lib/data/manifest.js';
import { parsePrepareOptions } from '../../lib/data/prepare.js';
import { chatmlLlama2Files } from '../fixtures/tokenizers/real-tokenizers.js';

/** Runs `prepare ...args` in-process; resolves to commander's error output, or '' on success. */
async function runPrepare(args: string[]): Promise<string> {
  let stderr = '';
  const program = new Command('mlx-qlora').exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  register(program);
  program.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} }));
  try {
    await program.parseAsync(['node', 'mlx-qlora', 'prepare', ...args]);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
  }
  return stderr;
}

const base = ['--model', 'm', '--input', 'i', '--out', 'o'];

afterEach(() => {
  vi.restoreAllMocks();
});

describe('prepare flags', () => {
  it.each([
    [['--near-dup', '0'], /--near-dup <jaccard>' argument '0' is invalid\. expected a number strictly between 0 and 1/],
    [['--near-dup', '1'], /--near-dup <jaccard>' argument '1' is invalid/],
    [['--max-seq-length', '1'], /--max-seq-length <n>' argument '1' is invalid\. expected an integer >= 2/],
    [['--max-seq-length', '0'], /--max-seq-length <n>' argument '0' is invalid/],
    [['--min-messages', '-1'], /--min-messages <n>' argument '-1' is invalid/],
    [['--format', 'x.jsonl=sharegtp'], /"sharegtp" is not a record format \(chatml, alpaca, sharegpt/],
  ])('%j is refused by its flag', async (args, message) => {
    expect(await runPrepare([...base, ...(args as string[])])).toMatch(message);
  });

  it('--format: one global format at most, any number of FILE=FORMAT', () => {
    expect(splitFormatSpecs(['chatml', 'legacy/*.jsonl=text', 'b.jsonl=alpaca'])).toEqual({
      format: 'chatml',
      formatByFile: [
        { pattern: 'legacy/*.jsonl', format: 'text' },
        { pattern: 'b.jsonl', format: 'alpaca' },
      ],
    });
    expect(() => splitFormatSpecs(['chatml', 'sharegpt'])).toThrow(/two formats for every file/);
  });

  it('a bad option value through the library names the option and its flag', () => {
    const ok = { inputs: ['i'], outDir: 'o' };
    expect(() => parsePrepareOptions({ ...ok, nearDuplicateThreshold: 1 })).toThrow(/^invalid prepare option nearDuplicateThreshold \(--near-dup\): /);
    expect(() => parsePrepareOptions({ ...ok, maxSeqLength: 1 })).toThrow(/^invalid prepare option maxSeqLength \(--max-seq-length\): /);
    expect(() => parsePrepareOptions({ ...ok, split: { valid: 0.6, test: 0.5 } })).toThrow(/^invalid prepare option split \(--valid-fraction \/ --test-fraction\): valid \+ test must leave something for train/);
    expect(() => parsePrepareOptions({ ...ok, mapping: { mesages: 'turns' } as never })).toThrow(/^invalid prepare option mapping \(--mapping\): /);
  });

  it('end to end: --format FILE=FORMAT next to detection, with a model folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlxq-cli-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const model = join(dir, 'model');
    mkdirSync(model);
    const files = chatmlLlama2Files();
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(files.tokenizer));
    writeFileSync(join(model, 'tokenizer_config.json'), JSON.stringify(files.config));
    const data = join(dir, 'data');
    mkdirSync(join(data, 'legacy'), { recursive: true });
    writeFileSync(join(data, 'chat.jsonl'), `${JSON.stringify({ messages: [{ role: 'user', content: 'Hi?' }, { role: 'assistant', content: 'Hello.' }] })}\n`);
    writeFileSync(join(data, 'legacy', 'docs.jsonl'), `${JSON.stringify({ prompt: 'p', completion: 'c', text: 'A document.' })}\n`);
    const out = join(dir, 'out');
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = await runPrepare(['--model', model, '--template', 'chatml', '--input', data, '--out', out, '--format', 'legacy/*.jsonl=text', '--no-progress']);
    expect(err).toBe('');
    expect(stdout.mock.calls.map((c) => String(c[0])).join('')).toContain(`Wrote ${out}/manifest.json`);
    const formats = readManifest(out).sources.map((s) => [s.path.slice(data.length + 1), s.format, s.formatDetected]);
    expect(formats).toEqual([
      ['chat.jsonl', 'chatml', true],
      ['legacy/docs.jsonl', 'text', false],
    ]);
  });
});
