/**
 * What export needs to know about a base model without loading its weights: its chat template
 * (for the Modelfile) and how Ollama names it.
 */
import type { ModelSource } from '../source/model-source.js';
import { loadModelTokenizer } from '../tokenizer/load-tokenizer.js';

/**
 * The base's Jinja chat template (tokenizer_config.json, chat_template.jinja, the GGUF's
 * tokenizer.chat_template, or an Ollama model's template layer) and where it was found, or
 * undefined when it has none.
 */
export async function baseChatTemplate(base: string, ollamaModelsDir?: string): Promise<{ source: string; where: string } | undefined> {
  try {
    const { template } = await loadModelTokenizer(base, ollamaModelsDir ? { ollamaModelsDir } : {});
    return { source: template.source, where: template.name };
  } catch (error) {
    if (/has no chat template/.test((error as Error).message)) return undefined;
    throw error;
  }
}

/**
 * The FROM of an adapter Modelfile: the Ollama name of an Ollama base, the path of a GGUF base.
 * An HF base has no GGUF for Ollama to run the adapter on.
 */
export function ollamaBaseOf(base: string, source: ModelSource, registering = false): { from: string; ollamaName?: string } {
  if (source.kind === 'ollama') return { from: base, ollamaName: base };
  if (source.kind === 'gguf' && !registering) return { from: source.path };
  if (source.kind === 'gguf') {
    throw new Error(
      `Ollama runs an adapter on a model it holds, and the base here is the file ${source.path}; ` +
        `pass --model <the Ollama name of that model>, or register the fused model (--gguf q4_k_m)`,
    );
  }
  throw new Error(
    `the base ${source.path} is an HF folder, which Ollama cannot run an adapter on; export the base first ` +
      `(mlx-qlora export --model ${base} --gguf f16 --out base.gguf) and pass --model base.gguf, or export the fused model (--gguf q4_k_m)`,
  );
}
