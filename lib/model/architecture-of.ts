/** A model's decoder shape without loading its weights: config.json of an HF folder, the header of a GGUF file or Ollama blob. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readGguf } from '../gguf/reader.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from './architecture.js';
import { resolveModelSource } from '../source/model-source.js';

export async function architectureOfModel(spec: string, options: { ollamaModelsDir?: string } = {}): Promise<Architecture> {
  const source = await resolveModelSource(spec, options);
  if (source.kind !== 'hf') return architectureFromGguf(await readGguf(source.path));
  const configPath = join(source.path, 'config.json');
  const text = await readFile(configPath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${configPath}: ${error.code === 'ENOENT' ? 'not found' : error.message}`);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${configPath}: invalid JSON (${(error as Error).message})`);
  }
  return architectureFromHf(json, configPath);
}
