/** `mlx-qlora inspect prepared/`: prints sample records with the trained tokens highlighted. */
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { PreparedDataset } from '../../data/prepared-dataset.js';
import { mulberry32 } from '../../data/rng.js';
import { SPLITS, type SplitName } from '../../data/split.js';
import { loadModelTokenizer } from '../../tokenizer/load-tokenizer.js';
import { highlightRecord } from '../../data/highlight.js';

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('print sample records of a prepared dataset with the trained spans highlighted')
    .argument('<dir>', 'prepared dataset folder')
    .option('--sample <n>', 'records to print', count, 10)
    .addOption(new Option('--split <split>', 'split to sample').choices([...SPLITS]).default('train'))
    .option('--seed <n>', 'sampling seed', count, 1)
    .option('--no-color', 'mark trained text with ⟦ ⟧ instead of color')
    .action(async (dir: string, flags: { sample: number; split: SplitName; seed: number; color: boolean }) => {
      const dataset = new PreparedDataset(dir);
      try {
        const m = dataset.manifest;
        const { tokenizer } = await loadModelTokenizer(join(dir, m.tokenizer.dir));
        const split = dataset.split(flags.split);
        const color = flags.color && process.stdout.isTTY === true;
        process.stdout.write(
          `${dir}: tokenizer ${m.tokenizer.model} (${m.tokenizer.vocabSize} tokens), template ${m.template.name}\n` +
            SPLITS.map((s) => `${s}: ${m.splits[s].records} records, ${m.splits[s].tokens} tokens (${m.splits[s].trainedTokens} trained)`).join('; ') +
            `\nTrained tokens are ${color ? 'green' : 'inside ⟦ ⟧'}.\n`,
        );
        const rng = mulberry32(flags.seed);
        const picks = new Set<number>();
        while (picks.size < Math.min(flags.sample, split.size)) picks.add(Math.floor(rng() * split.size));
        for (const i of [...picks].sort((a, b) => a - b)) {
          const { tokens, mask } = split.read(i);
          const trained = mask.reduce((a, b) => a + b, 0);
          process.stdout.write(`\n── ${flags.split}[${i}] ${tokens.length} tokens, ${trained} trained ──\n${highlightRecord(tokenizer, tokens, mask, color)}\n`);
        }
      } finally {
        dataset.close();
      }
    });
}
