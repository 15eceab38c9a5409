/** `mlx-qlora info`: what a model resolves to, its architecture, sizes and quantization, from its metadata alone. */
import { Command } from 'commander';
import { device } from '../../device.js';
import { summarizeModel } from '../../model/model-summary.js';
import { bitsArg, groupSizeArg, quantizationOf } from './cli-numbers.js';

interface InfoFlags {
  model: string;
  bits?: number | 'none';
  groupSize?: number;
  json?: boolean;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

export function register(program: Command): void {
  program
    .command('info')
    .description("print a model's architecture, parameters, sizes and quantization (reads only its metadata)")
    .requiredOption('--model <model>', 'HF folder, .gguf file or Ollama model name')
    .option('--bits <n>', "base quantization bits (2, 3, 4, 5, 6, 8) or 'none' for a dense base (default: the model as stored)", bitsArg)
    .option('--group-size <n>', 'quantization group size (32, 64, 128; default 64 with --bits)', groupSizeArg)
    .option('--json', 'print JSON')
    .action(async (flags: InfoFlags) => {
      const quantization = quantizationOf(flags.bits, flags.groupSize);
      const summary = await summarizeModel(flags.model, quantization ? { quantization } : {});
      const { source, architecture: a, build } = summary;
      const report = {
        source: source.kind === 'ollama' ? { kind: 'ollama', name: source.name, path: source.path } : source,
        device: await device(),
        architecture: a,
        build,
        parameters: summary.parameters,
        baseBytes: summary.baseBytes,
        linearStorage: summary.linearStorage,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const lines = [
        `source:        ${source.kind} ${source.path}`,
        `architecture:  ${a.family}, ${a.numLayers} layers, hidden ${a.hiddenSize}, MLP ${a.intermediateSize}, vocab ${a.vocabSize}`,
        `attention:     ${a.numHeads} heads, ${a.numKvHeads} KV heads, head dim ${a.headDim}${a.slidingWindow ? `, sliding window ${a.slidingWindow}` : ''}`,
        `rope:          theta ${a.ropeTheta}, ${a.ropeTraditional ? 'interleaved (GGUF order)' : 'split halves (HF order)'}${a.ropeScaled ? ', llama3 scaling' : ''}`,
        `parameters:    ${(summary.parameters / 1e9).toFixed(3)}B`,
        `embeddings:    ${a.tieWordEmbeddings ? 'tied' : 'separate LM head'}`,
        `base weights:  ${gib(summary.baseBytes)}, linears ${Object.entries(summary.linearStorage).map(([k, v]) => `${v}× ${k}`).join(', ')}`,
        `compute:       ${build.computeDtype}, kernel ${build.kernel}, on ${report.device.type} (${report.device.name})`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
