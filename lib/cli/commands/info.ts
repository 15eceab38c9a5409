/** `mlx-qlora info`: what a model resolves to, its architecture, sizes and quantization. */
import { Command } from 'commander';
import { device } from '../../device.js';
import type { Architecture } from '../../model/architecture.js';
import { loadModel } from '../../model/load-model.js';
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

/** Parameters of the decoder as its architecture defines them (LoRA excluded). */
export function parameterCount(a: Architecture): number {
  const q = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  const attention = a.hiddenSize * (q + 2 * kv) + q * a.hiddenSize + (a.attentionBias ? q + 2 * kv : 0);
  const mlp = 3 * a.hiddenSize * a.intermediateSize;
  const perLayer = attention + mlp + 2 * a.hiddenSize;
  const embeddings = a.vocabSize * a.hiddenSize * (a.tieWordEmbeddings ? 1 : 2);
  return a.numLayers * perLayer + embeddings + a.hiddenSize;
}

export function register(program: Command): void {
  program
    .command('info')
    .description('load a model and print its architecture, sizes and quantization')
    .requiredOption('--model <model>', 'HF folder, .gguf file or Ollama model name')
    .option('--bits <n>', "QLoRA base bits (2, 3, 4, 5, 6, 8), or 'none' (default 4)", bitsArg)
    .option('--group-size <n>', 'quantization group size (32, 64, 128; default 64)', groupSizeArg)
    .option('--json', 'print JSON')
    .action(async (flags: InfoFlags) => {
      const quantization = quantizationOf(flags.bits, flags.groupSize);
      const model = await loadModel(flags.model, quantization ? { quantization } : {});
      try {
        const info = await model.native.info();
        const { ropePeriods, ...architecture } = model.architecture;
        const report = {
          source: model.source.kind === 'ollama' ? { kind: 'ollama', name: model.source.name, path: model.source.path } : model.source,
          device: await device(),
          architecture: { ...architecture, ropeScaled: ropePeriods !== undefined },
          build: model.build,
          parameters: parameterCount(model.architecture),
          baseBytes: info.baseBytes,
          linearStorage: info.linearStorage,
        };
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const a = model.architecture;
        const lines = [
          `source:        ${model.source.kind} ${model.source.path}`,
          `architecture:  ${a.family}, ${a.numLayers} layers, hidden ${a.hiddenSize}, MLP ${a.intermediateSize}, vocab ${a.vocabSize}`,
          `attention:     ${a.numHeads} heads, ${a.numKvHeads} KV heads, head dim ${a.headDim}${a.slidingWindow ? `, sliding window ${a.slidingWindow}` : ''}`,
          `rope:          theta ${a.ropeTheta}, ${a.ropeTraditional ? 'interleaved (GGUF order)' : 'split halves (HF order)'}${ropePeriods ? ', llama3 scaling' : ''}`,
          `parameters:    ${(report.parameters / 1e9).toFixed(3)}B`,
          `embeddings:    ${a.tieWordEmbeddings ? 'tied' : 'separate LM head'}`,
          `base weights:  ${gib(info.baseBytes)}, linears ${Object.entries(info.linearStorage).map(([k, v]) => `${v}× ${k}`).join(', ')}`,
          `compute:       ${model.build.computeDtype}, kernel ${model.build.kernel}, on ${report.device.type} (${report.device.name})`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        model.dispose();
      }
    });
}
