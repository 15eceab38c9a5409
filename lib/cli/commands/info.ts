/** `mlx-qlora info`: what a model resolves to, its architecture, sizes and quantization. */
import { Command } from 'commander';
import { device } from '../../device.js';
import { loadModel } from '../../model/load-model.js';

interface InfoFlags {
  model: string;
  bits?: string;
  json?: boolean;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

export function register(program: Command): void {
  program
    .command('info')
    .description('load a model and print its architecture, sizes and quantization')
    .requiredOption('--model <model>', 'HF folder, .gguf file or Ollama model name')
    .option('--bits <n>', "QLoRA base bits, or 'none' (default 4)")
    .option('--json', 'print JSON')
    .action(async (flags: InfoFlags) => {
      const quantization = flags.bits === undefined ? undefined : flags.bits === 'none' ? ('none' as const) : { bits: Number(flags.bits), groupSize: 64 };
      const model = await loadModel(flags.model, quantization ? { quantization } : {});
      try {
        const info = await model.native.info();
        const { ropePeriods, ...architecture } = model.architecture;
        const report = {
          source: model.source.kind === 'ollama' ? { kind: 'ollama', name: model.source.name, path: model.source.path } : model.source,
          device: await device(),
          architecture: { ...architecture, ropeScaled: ropePeriods !== undefined },
          build: model.build,
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
