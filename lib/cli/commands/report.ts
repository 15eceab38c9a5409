/** `mlx-qlora report --run DIR`: a training run's report (loss, learning rate, tokens/s, memory). */
import type { Command } from 'commander';
import { writeRunReport } from '../../eval/report/run-report.js';

export function register(program: Command): void {
  program
    .command('report')
    .description("render a training run's report (report.md, report.json, report.html with charts) from its metrics.jsonl")
    .requiredOption('--run <dir>', 'run folder (holds metrics.jsonl)')
    .option('--out <dir>', 'where to write the report (default: the run folder)')
    .action(async (flags: { run: string; out?: string }) => {
      const { report, files } = await writeRunReport(flags.run, flags.out ?? flags.run);
      const s = report.summary;
      process.stdout.write(`${s.steps} steps, loss ${s.first_loss ?? '–'} → ${s.last_loss ?? '–'}${s.best_val_loss !== null ? `, best validation loss ${s.best_val_loss} at step ${s.best_step}` : ''}\n`);
      for (const f of files) process.stdout.write(`wrote ${f}\n`);
    });
}
