/** `mlx-qlora demo`: the whole flow on a built-in tiny model, in about a minute. */
import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from '../../demo/demo.js';

function stepsArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new InvalidArgumentError('expected a whole number of steps, 1–10000');
  return n;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run prepare → train → eval → export GGUF (→ Ollama) on a built-in tiny model and generated ICEBURG-style logs')
    .option('--out <dir>', 'folder for everything the demo writes (emptied first)', 'mlx-qlora-demo')
    .option('--steps <n>', 'training steps', stepsArg, 200)
    .option('--no-ollama', 'do not register with Ollama even when it answers')
    .action(async (flags: { out: string; steps: number; ollama: boolean }) => {
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGINT', stop);
      try {
        const started = performance.now();
        const r = await runDemo({ out: flags.out, steps: flags.steps, ollama: flags.ollama, signal: controller.signal, log: (line) => process.stdout.write(`${line}\n`) });
        process.stdout.write(
          `\ndone in ${((performance.now() - started) / 1000).toFixed(0)} s: training loss ${r.firstLoss.toFixed(2)} → ${r.lastLoss.toFixed(2)}; ` +
            `version ${r.version.name} (${r.version.status}) in ${r.out}/versions.json; eval report ${r.eval.report}\n`,
        );
      } finally {
        process.off('SIGINT', stop);
      }
    });
}
