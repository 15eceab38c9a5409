/** What `--model` names: an HF folder, a GGUF file, or an Ollama model resolved to its GGUF blob. */
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { resolveOllamaModel, type OllamaModel } from './ollama-store.js';

export type ModelSource =
  | { kind: 'hf'; path: string }
  | { kind: 'gguf'; path: string }
  | { kind: 'ollama'; path: string; name: string; ollama: OllamaModel };

async function hasGgufMagic(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && buf.toString('latin1') === 'GGUF';
  } finally {
    await fh.close();
  }
}

export async function resolveModelSource(spec: string, options: { ollamaModelsDir?: string } = {}): Promise<ModelSource> {
  const path = resolve(spec);
  const info = await stat(path).catch(() => undefined);
  if (info?.isDirectory()) return { kind: 'hf', path };
  if (info?.isFile()) {
    if (await hasGgufMagic(path)) return { kind: 'gguf', path };
    throw new Error(`${path}: not a GGUF file (no GGUF magic) and not a model folder`);
  }
  if (/[\\/]/.test(spec) && !/^[\w.-]+\/[\w.-]+(:[\w.-]+)?$/.test(spec)) {
    throw new Error(`${spec}: no such file or folder`);
  }
  const ollama = await resolveOllamaModel(spec, options.ollamaModelsDir ? { modelsDir: options.ollamaModelsDir } : {});
  return { kind: 'ollama', path: ollama.modelPath, name: ollama.name, ollama };
}
