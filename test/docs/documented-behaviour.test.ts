/**
 * What the README says the code does, the code does: the compute dtype `auto` picks, and options
 * that are checked rather than silently replaced by defaults (the library's generate options, the
 * CLI's number options).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { register as registerGenerate } from '../../lib/cli/commands/generate.js';
import { register as registerInfo } from '../../lib/cli/commands/info.js';
import { generate, generateTokens, validateGenerateOptions, type GenerateOptions } from '../../lib/model/generate.js';
import { defaultComputeDtype } from '../../lib/model/load-model.js';
import type { NativeModel } from '../../lib/native.js';

const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8').replace(/\s+/g, ' ');

describe('compute_dtype: auto, as documented', () => {
  const sentence = /`training\.compute_dtype: auto` \(([^)]*)\)/.exec(readme)?.[1] ?? '';

  it('is documented', () => {
    expect(sentence).not.toBe('');
  });

  it.each([
    ['float32 on MLX\'s CPU backend', false, ['hf', 'gguf', 'ollama'] as const, 'float32'],
    ['on a GPU bfloat16 for an HF folder', true, ['hf'] as const, 'bfloat16'],
    ['float16 for a GGUF file or an Ollama model', true, ['gguf', 'ollama'] as const, 'float16'],
  ])('"%s"', (claim, gpu, sources, dtype) => {
    expect(sentence).toContain(claim);
    for (const source of sources) expect(defaultComputeDtype(gpu, source)).toBe(dtype);
  });
});

/** A model whose native side must never be reached: options are checked before it is. */
const untouchable = {
  generator: () => {
    throw new Error('generate reached the native model');
  },
} as unknown as NativeModel;

describe('generate options are validated, never silently ignored', () => {
  it.each<[Record<string, unknown>, RegExp]>([
    [{ temperature: '0.7' }, /temperature: expected a number, got "0\.7"/],
    [{ temprature: 0.7 }, /temprature: unknown key; did you mean "temperature"\?/],
    [{ topP: 1.5 }, /topP: must be <= 1/],
    [{ topK: -1 }, /topK: must be >= 0/],
    [{ maxTokens: 2.5 }, /maxTokens: expected an integer/],
    [{ seed: '7' }, /seed: expected a number/],
    [{ stopTokens: [2, '3'] }, /stopTokens\[1\]: expected a number/],
    [{ lora: 'false' }, /lora: expected true or false, got "false"/],
    [{ temperature: -0.1, topP: NaN }, /temperature: must be >= 0.*topP/],
  ])('%j is refused with a message naming the option', async (options, message) => {
    expect(() => validateGenerateOptions(options)).toThrow(TypeError);
    expect(() => validateGenerateOptions(options)).toThrow(message);
    await expect(generate(untouchable, [1, 2], options as GenerateOptions)).rejects.toThrow(message);
    await expect(generateTokens(untouchable, [1, 2], options as GenerateOptions).next()).rejects.toThrow(message);
  });

  it('accepts every documented option', () => {
    const options = { maxTokens: 0, temperature: 0.7, topP: 0.9, topK: 40, seed: 1, stopTokens: [2], lora: false, signal: new AbortController().signal };
    expect(validateGenerateOptions(options)).toEqual(options);
    expect(validateGenerateOptions(undefined)).toEqual({});
  });

  it('refuses prompts that are not token ids', async () => {
    await expect(generate(untouchable, [1, 2.5])).rejects.toThrow(/prompt\[1\] is 2\.5, not a token id/);
    await expect(generate(untouchable, [-1])).rejects.toThrow(/prompt\[0\] is -1/);
    await expect(generate(untouchable, [])).rejects.toThrow(/at least one token/);
  });
});

describe('CLI number options are validated', () => {
  async function parseError(register: (p: Command) => void, args: string[]): Promise<string> {
    const program = new Command('mlx-qlora').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    register(program);
    for (const command of program.commands) command.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    try {
      await program.parseAsync(['node', 'mlx-qlora', ...args]);
    } catch (error) {
      expect(error).toBeInstanceOf(CommanderError);
      return (error as Error).message;
    }
    throw new Error(`mlx-qlora ${args.join(' ')} was accepted`);
  }

  const generateBase = ['generate', '--model', '/nonexistent', '--prompt', 'hi'];
  it.each([
    [['--temperature', '0.7x'], /--temperature.*'0\.7x' is invalid/],
    [['--temperature', '-1'], /--temperature/],
    [['--top-p', '2'], /--top-p.*'2' is invalid/],
    [['--top-k', '1.5'], /--top-k/],
    [['--max-tokens', '0'], /--max-tokens/],
    [['--seed', 'abc'], /--seed/],
    [['--bits', '7'], /--bits.*expected one of 2, 3, 4, 5, 6, 8 or none/],
    [['--group-size', '48'], /--group-size/],
  ])('generate %j', async (flags, message) => {
    expect(await parseError(registerGenerate, [...generateBase, ...flags])).toMatch(message);
  });

  it('info --bits and --group-size', async () => {
    expect(await parseError(registerInfo, ['info', '--model', '/nonexistent', '--bits', 'four'])).toMatch(/--bits/);
    expect(await parseError(registerInfo, ['info', '--model', '/nonexistent', '--group-size', '0'])).toMatch(/--group-size/);
  });
});
