#!/usr/bin/env node
import { Command } from 'commander';
import { commands } from './commands/index.js';

const program = new Command('mlx-qlora')
  .description('QLoRA fine-tuning of Llama-family models on MLX, with GGUF export for Ollama')
  .showHelpAfterError();

for (const register of commands) register(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.stderr.write(`mlx-qlora: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
