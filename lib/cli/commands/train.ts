/** `mlx-qlora train`: a training run from a YAML/JSON config, with a progress bar and clean Ctrl+C. */
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ConfigError } from '../../config/config-error.js';
import type { DoneEvent, RunEvent, StartEvent } from '../../train/run-events.js';
import { train } from '../../train/trainer.js';
import { trainConfigForCli } from '../../rollout/retrain-adapter.js';

interface TrainFlags {
  config: string;
  resume?: boolean;
  json?: boolean;
  initAdapter?: string;
  registry: string;
}

function formatSeconds(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

/** What data.overlong did, one line per split that had records over max_seq_length. */
export function overlongLines(event: StartEvent): string[] {
  const o = event.overlong;
  if (!o) return [];
  const lines: string[] = [];
  for (const split of ['train', 'valid', 'test'] as const) {
    const c = o[split];
    if (!c || c.truncated + c.truncated_away + c.dropped === 0) continue;
    const parts = [
      ...(c.truncated ? [`${c.truncated} cut to ${o.max_seq_length} tokens`] : []),
      ...(c.truncated_away ? [`${c.truncated_away} left out (nothing supervised within ${o.max_seq_length} tokens)`] : []),
      ...(c.dropped ? [`${c.dropped} left out (data.overlong: drop)`] : []),
    ];
    lines.push(`${split}: records longer than data.max_seq_length ${o.max_seq_length}: ${parts.join(', ')}`);
  }
  return lines;
}

function testLine(test: DoneEvent['test']): string {
  if (!test) return '';
  return `; test loss ${test.loss === null ? 'NaN/Inf' : test.loss.toFixed(4)}, perplexity ${test.perplexity?.toFixed(2) ?? '∞'} (${test.records} records)`;
}

function describe(event: RunEvent): string | undefined {
  switch (event.type) {
    case 'eval':
      return event.val_loss === null
        ? `eval @ step ${event.step}: val_loss is NaN/Inf (not counted as best)`
        : `eval @ step ${event.step}: val_loss ${event.val_loss.toFixed(4)}, perplexity ${event.perplexity?.toFixed(2) ?? '∞'}${event.is_best ? ' (best)' : ''}`;
    case 'checkpoint':
      return `checkpoint (${event.reason}) → ${event.path}`;
    case 'nonfinite':
      return `step ${event.step}: NaN/Inf loss or gradient, update skipped (${event.count} so far)`;
    case 'skip':
      return `step ${event.step}: no supervised token in this update's batches, update skipped`;
    case 'done':
      return `done (${event.reason}) after ${event.step} steps in ${formatSeconds(event.elapsed_seconds)}${event.best ? `; best val_loss ${event.best.val_loss.toFixed(4)} at step ${event.best.step}` : ''}${testLine(event.test)}; adapter: ${event.adapter_path}`;
    default:
      return undefined;
  }
}

export function register(program: Command): void {
  program
    .command('train')
    .description('fine-tune with QLoRA from a config file (YAML or JSON)')
    .requiredOption('--config <file>', 'training config (train.yaml)')
    .option('--resume', "continue from the run folder's latest checkpoint")
    .option('--json', 'print every event as a JSON line instead of a progress bar')
    .option('--init-adapter <version|folder>', 'start from an earlier adapter (a folder, or a version name in --registry); overrides lora.init_adapter')
    .option('--registry <root>', 'version registry folder that version names (--init-adapter, lora.init_adapter) resolve in', '.')
    .action(async (flags: TrainFlags) => {
      const controller = new AbortController();
      const bar = flags.json
        ? undefined
        : new cliProgress.SingleBar(
            { format: 'step {value}/{total} |{bar}| loss {loss} | {tps} tok/s | mem {mem} GB | ETA {eta}', hideCursor: true, clearOnComplete: false },
            cliProgress.Presets.shades_classic,
          );
      let interrupts = 0;
      const onSigint = () => {
        interrupts++;
        if (interrupts === 1) {
          process.stderr.write('\nstopping after this step and writing a checkpoint (Ctrl+C again to quit at once)\n');
          controller.abort();
        } else {
          // process.exit() would run the addon's cleanup, which waits for the MLX job in flight.
          // With no listener left the re-raised signal takes its default action and ends the
          // process at once. Checkpoints are written to a temporary folder and renamed, so this
          // loses only the steps since the last one; the run lock left behind is stale and taken
          // over by --resume.
          bar?.stop(); // gives the terminal its cursor back
          process.removeAllListeners('SIGINT');
          process.kill(process.pid, 'SIGINT');
        }
      };
      process.on('SIGINT', onSigint);
      const say = (line: string) => {
        if (bar) bar.stop();
        process.stderr.write(`${line}\n`);
      };
      try {
        const config = await trainConfigForCli(flags.config, flags.initAdapter, flags.registry);
        const run = train(config, { signal: controller.signal, resume: flags.resume ?? false });
        let total = 0;
        let payload = { loss: '-', tps: '-', mem: '-', eta: '?' };
        for await (const event of run) {
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(event)}\n`);
            continue;
          }
          if (event.type === 'start') {
            total = event.total_steps;
            if (event.resumed_from) say(`resuming from ${event.resumed_from}`);
            for (const line of overlongLines(event)) say(line);
            bar!.start(total, event.step, payload);
          } else if (event.type === 'step') {
            payload = {
              loss: event.loss.toFixed(4),
              tps: event.tokens_per_sec.toFixed(0),
              mem: (event.peak_memory_bytes / 1e9).toFixed(2),
              eta: formatSeconds(event.eta_seconds),
            };
            bar!.update(event.step, payload);
          } else {
            const line = describe(event);
            if (line) {
              say(line);
              if (event.type !== 'done') bar!.start(total, event.step, payload);
            }
          }
        }
        await run.done;
      } catch (error) {
        bar?.stop();
        if (error instanceof ConfigError) throw new Error(error.message);
        throw error;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
