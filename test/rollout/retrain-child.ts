/**
 * The retrain job in a child process that kills itself (SIGKILL, no cleanup) inside one stage:
 * at the stage's start, or for `train` after its second step (a checkpoint is on disk by then).
 * Usage: node --import tsx retrain-child.ts PIPELINE.yaml [STAGE]
 */
import { loadPipelineConfig } from '../../lib/rollout/pipeline-config.js';
import { runRetrain } from '../../lib/rollout/retrain.js';

const [file, killIn] = process.argv.slice(2);
const die = () => process.kill(process.pid, 'SIGKILL');
const config = await loadPipelineConfig(file!);
const result = await runRetrain(config, {
  onStage: (stage, event) => {
    if (stage === killIn && event === 'start' && stage !== 'train') die();
  },
  onTrainEvent: (event) => {
    if (killIn === 'train' && event.type === 'step' && event.step === 2) die();
  },
});
process.stdout.write(`${JSON.stringify({ version: result.version.name, ollama: result.ollama })}\n`);
