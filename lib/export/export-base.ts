/**
 * What export needs to know about a base model without loading its weights: its architecture
 * (for the adapter GGUF), its chat template (for the Modelfile) and how Ollama names it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readGguf } from '../gguf/reader.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from '../model/architecture.js';
import type { ModelSource } from '../model/source.js';
import { loadModelTokenizer } from '../tokenizer/load-tokenizer.js';

/** The base's architecture from config.json or the GGUF header (no tensor data is read). */
export async function baseArchitecture(source: ModelSource): Promise<Architecture> {
  if (source.kind === 'hf') {
    const path = join(source.path, 'config.json');
    const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new Error(`${path}: ${e.code === 'ENOENT' ? 'not found' : e.message}`);
    });
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`${path}: invalid JSON (${(error as Error).message})`);
    }
    return architectureFromHf(json, path);
  }
  return architectureFromGguf(await readGguf(source.path));
}

/**
 * The base's Jinja chat template (tokenizer_config.json, chat_template.jinja, the GGUF's
 * tokenizer.chat_template, or an Ollama model's template layer), or undefined when it has none.
 */
export async function baseChatTemplate(base: string, ollamaModelsDir?: string): Promise<string | undefined> {
  try {
    const { template } = await loadModelTokenizer(base, ollamaModelsDir ? { ollamaModelsDir } : {});
    return template.source;
  } catch (error) {
    if (/has no chat template/.test((error as Error).message)) return undefined;
    throw error;
  }
}

/**
 * The FROM of an adapter Modelfile: the Ollama name of an Ollama base, the path of a GGUF base.
 * An HF base has no GGUF for Ollama to run the adapter on.
 */
export function ollamaBaseOf(base: string, source: ModelSource): { from: string; ollamaName?: string } {
  if (source.kind === 'ollama') return { from: base, ollamaName: base };
  if (source.kind === 'gguf') return { from: source.path };
  throw new Error(
    `the base ${source.path} is an HF folder, which Ollama cannot run an adapter on; export the base first ` +
      `(mlx-qlora export --model ${base} --gguf f16 --out base.gguf) and pass --model base.gguf, or export the fused model (--gguf q4_k_m)`,
  );
}
