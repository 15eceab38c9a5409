/** `mlx-qlora fuse`: a base model with an adapter merged in, written as a dense HF folder. */
import { Command, InvalidArgumentError } from 'commander';
import { writeFusedModel, type FuseOptions } from '../../model/fuse.js';
import { loadModel } from '../../model/load-model.js';
import { bitsArg, groupSizeArg, quantizationOf } from './cli-numbers.js';

interface FuseFlags {
  model: string;
  adapter: string;
  out: string;
  dtype: NonNullable<FuseOptions['dtype']>;
  bits?: number | 'none';
  groupSize?: number;
  overwrite?: boolean;
}

function dtypeArg(value: string): NonNullable<FuseOptions['dtype']> {
  if (value === 'float16' || value === 'bfloat16' || value === 'float32') return value;
  throw new InvalidArgumentError('expected float16, bfloat16 or float32');
}

export function register(program: Command): void {
  program
    .command('fuse')
    .description('merge an adapter into its base model and write a dense HF folder (config.json + safetensors)')
    .requiredOption('--model <model>', 'HF folder, .gguf file or Ollama model name')
    .requiredOption('--adapter <dir>', 'adapter folder (adapter_config.json + adapters.safetensors)')
    .requiredOption('--out <dir>', 'the folder to write')
    .option('--dtype <dtype>', 'float16, bfloat16 or float32', dtypeArg, 'float16')
    // By default the adapter is merged into the base it was trained on (its adapter_config.json
    // records the quantization), so the fused model computes what the adapter learned against;
    // `--bits none` merges into the original dense weights instead, as PEFT does.
    .option(
      '--bits <n>',
      "quantize the base first (2, 3, 4, 5, 6, 8), or 'none' for its original weights (default: what the adapter records; else the model as stored)",
      bitsArg,
    )
    .option('--group-size <n>', 'quantization group size (32, 64, 128; default 64 with --bits)', groupSizeArg)
    .option('--overwrite', 'replace --out if it exists')
    .action(async (flags: FuseFlags) => {
      const quantization = quantizationOf(flags.bits, flags.groupSize);
      const model = await loadModel(flags.model, { adapter: flags.adapter, ...(quantization ? { quantization } : {}), computeDtype: 'float32' });
      try {
        const result = await writeFusedModel(model, flags.out, { dtype: flags.dtype, ...(flags.overwrite ? { overwrite: true } : {}) });
        process.stdout.write(`fused ${result.tensors} tensors (${(result.bytes / 2 ** 30).toFixed(2)} GiB, ${flags.dtype}) into ${result.dir}\n`);
      } finally {
        model.dispose();
      }
    });
}
