/** `mlx-qlora generate`: text from a base model, optionally with an adapter, streamed or as JSON. */
import { Command } from 'commander';
import { generateTokens } from '../../model/generate.js';
import { loadModel } from '../../model/load-model.js';
import { loadModelTokenizer } from '../../tokenizer/load-tokenizer.js';
import { bitsArg, groupSizeArg, integerArg, numberArg, quantizationOf } from './cli-numbers.js';

interface GenerateFlags {
  model: string;
  adapter?: string;
  prompt: string;
  chat?: boolean;
  system?: string;
  template?: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  json?: boolean;
  bits?: number | 'none';
  groupSize?: number;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('generate text from a model (HF folder, .gguf file or Ollama name)')
    .requiredOption('--model <model>', 'HF folder, .gguf file or Ollama model name')
    .option('--adapter <dir>', 'adapter folder (adapter_config.json + adapters.safetensors)')
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--chat', "wrap the prompt as a user turn in the model's chat template")
    .option('--system <text>', 'system message (with --chat)')
    .option('--template <name|file>', "chat template: chatml, mistral, llama-3, alpaca or a .jinja file (default: the model's)")
    .option('--max-tokens <n>', 'most tokens to generate', integerArg(1), 256)
    .option('--temperature <t>', '0 is greedy', numberArg(0, 10), 0)
    .option('--top-p <p>', 'nucleus sampling', numberArg(0, 1), 1)
    .option('--top-k <k>', '0 is off', integerArg(0), 0)
    .option('--seed <s>', 'sampling seed', integerArg(0), 0)
    .option('--json', 'print {"prompt_tokens", "tokens", "text"} instead of streaming text')
    .option(
      '--bits <n>',
      "base quantization bits (2, 3, 4, 5, 6, 8) or 'none' for a dense base (default: what --adapter records it was trained on; else the model as stored)",
      bitsArg,
    )
    .option('--group-size <n>', 'quantization group size (32, 64, 128; default 64 with --bits)', groupSizeArg)
    .action(async (flags: GenerateFlags) => {
      // Without --chat no template is rendered, so a model without one must not be refused.
      const templateChoice = flags.template ?? (flags.chat ? undefined : 'chatml');
      const { tokenizer, template } = await loadModelTokenizer(flags.model, templateChoice ? { template: templateChoice } : {});
      let promptTokens: number[];
      if (flags.chat) {
        const messages = [
          ...(flags.system ? [{ role: 'system', content: flags.system }] : []),
          { role: 'user', content: flags.prompt },
        ];
        promptTokens = [...tokenizer.encode(template.render(messages, true))];
      } else {
        promptTokens = [...tokenizer.encode(flags.prompt)];
        if (tokenizer.addBos && tokenizer.bosId !== undefined) promptTokens.unshift(tokenizer.bosId);
      }
      const stopTokens = [tokenizer.eosId, tokenizer.tokenId('<|im_end|>'), tokenizer.tokenId('<|eot_id|>')].filter(
        (t): t is number => t !== undefined,
      );
      const quantization = quantizationOf(flags.bits, flags.groupSize);
      const model = await loadModel(flags.model, { ...(flags.adapter ? { adapter: flags.adapter } : {}), ...(quantization ? { quantization } : {}) });
      const controller = new AbortController();
      const onSigint = () => controller.abort();
      process.once('SIGINT', onSigint);
      try {
        const tokens: number[] = [];
        let printed = '';
        for await (const token of generateTokens(model.native, promptTokens, {
          maxTokens: flags.maxTokens,
          temperature: flags.temperature,
          topP: flags.topP,
          topK: flags.topK,
          seed: flags.seed,
          stopTokens,
          signal: controller.signal,
        })) {
          tokens.push(token);
          if (flags.json) continue;
          // Decode the whole continuation and print what is new, holding back an incomplete character.
          const text = tokenizer.decode(tokens);
          const stable = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
          if (stable.length > printed.length && stable.startsWith(printed)) {
            process.stdout.write(stable.slice(printed.length));
            printed = stable;
          }
        }
        const text = tokenizer.decode(tokens);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ prompt_tokens: promptTokens, tokens, text })}\n`);
        } else {
          process.stdout.write(`${text.slice(printed.length)}\n`);
        }
      } finally {
        process.off('SIGINT', onSigint);
        model.dispose();
      }
    });
}
