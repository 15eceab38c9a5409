/** `mlx-qlora retrain --config pipeline.yaml`: the monthly retraining job, resumable stage by stage. */
import { Command } from 'commander';
import { ConfigError } from '../../config/config-error.js';
import { loadPipelineConfig } from '../../rollout/pipeline-config.js';
import { runRetrain } from '../../rollout/retrain.js';

export function register(program: Command): void {
  program
    .command('retrain')
    .description('prepare new data, train from the current version, evaluate against it, export, register NAME-vN when the gate passes, record the version; rerun to resume')
    .requiredOption('--config <file>', 'pipeline config (pipeline.yaml)')
    .action(async (flags: { config: string }) => {
      const controller = new AbortController();
      const stop = () => {
        process.stderr.write('\nstopping after this training step; run retrain again to continue\n');
        controller.abort();
      };
      process.once('SIGINT', stop);
      try {
        const config = await loadPipelineConfig(flags.config);
        const say = (line: string) => process.stdout.write(`${line}\n`);
        const r = await runRetrain(config, {
          signal: controller.signal,
          onStage: (stage, event) => say(`${stage}: ${event === 'skip' ? 'finished before, skipped' : event === 'start' ? 'started' : 'finished'}`),
          onTrainEvent: (e) => {
            if (e.type === 'step' && (e.step % 10 === 0 || e.step === 1)) say(`  step ${e.step}: loss ${e.loss.toFixed(4)}`);
          },
        });
        say(`version ${r.version.name} (parent ${r.version.parent}, ${r.version.status}) recorded in ${config.registry}/versions.json`);
        say(r.gate.passed ? 'gate: passed' : `gate: not passed (${r.gate.reasons.join('; ')})`);
        say('name' in r.ollama ? `Ollama: ${r.ollama.name}` : `Ollama: not registered (${r.ollama.skipped})`);
      } catch (error) {
        if (error instanceof ConfigError) throw new Error(error.message);
        throw error;
      } finally {
        process.off('SIGINT', stop);
      }
    });
}
