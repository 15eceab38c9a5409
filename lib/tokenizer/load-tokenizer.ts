/**
 * Resolves `--model` (an HF folder, a tokenizer.json, a .gguf file, or an Ollama name) into a
 * tokenizer and a chat template. `--template` overrides the model's template with a built-in name or
 * a .jinja file.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { readGguf } from '../gguf/reader.js';
import { resolveOllamaModel } from '../source/ollama-store.js';
import { builtinForOllamaTemplate, BUILTIN_TEMPLATES, isBuiltinTemplateName } from './builtin-templates.js';
import { ChatTemplate } from './chat-template.js';
import { tokenizerFromGguf } from './gguf-vocab.js';
import { TextTokenizer } from './text-tokenizer.js';
import { configChatTemplate, parseTokenizerConfig, parseTokenizerJson, type TokenizerConfig } from './tokenizer-files.js';

export interface LoadTokenizerOptions {
  /** Built-in template name or path to a Jinja file; default: the model's own template. */
  template?: string;
  /** Ollama models directory (default: $OLLAMA_MODELS or Ollama's default). */
  ollamaModelsDir?: string;
}

export interface ModelTokenizer {
  tokenizer: TextTokenizer;
  template: ChatTemplate;
  /** `hf`, `gguf` or `ollama`, and the file the vocabulary came from. */
  kind: 'hf' | 'gguf' | 'ollama';
  vocabPath: string;
}

interface Loaded {
  tokenizer: TextTokenizer;
  kind: ModelTokenizer['kind'];
  vocabPath: string;
  template?: { name: string; source: string };
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (e) {
    throw new Error(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function loadHf(tokenizerPath: string): Promise<Loaded> {
  const dir = dirname(tokenizerPath);
  const json = parseTokenizerJson(await readJson(tokenizerPath), tokenizerPath);
  const configPath = join(dir, 'tokenizer_config.json');
  const config: TokenizerConfig = existsSync(configPath) ? parseTokenizerConfig(await readJson(configPath), configPath) : parseTokenizerConfig({}, configPath);
  const jinjaPath = join(dir, 'chat_template.jinja');
  let template: Loaded['template'];
  if (existsSync(jinjaPath)) template = { name: jinjaPath, source: await readFile(jinjaPath, 'utf8') };
  else {
    const fromConfig = configChatTemplate(config);
    if (fromConfig) template = { name: configPath, source: fromConfig };
  }
  return { tokenizer: new TextTokenizer({ tokenizer: json, config, source: tokenizerPath }), kind: 'hf', vocabPath: tokenizerPath, ...(template ? { template } : {}) };
}

async function loadGguf(path: string, kind: 'gguf' | 'ollama', source = path): Promise<Loaded> {
  const file = await readGguf(path);
  const { tokenizer, config } = tokenizerFromGguf(file);
  const templateSource = typeof config.chat_template === 'string' ? config.chat_template : undefined;
  return {
    tokenizer: new TextTokenizer({ tokenizer, config, source }),
    kind,
    vocabPath: path,
    ...(templateSource ? { template: { name: `${basename(path)}:tokenizer.chat_template`, source: templateSource } } : {}),
  };
}

async function loadModel(model: string, options: LoadTokenizerOptions): Promise<Loaded> {
  if (existsSync(model)) {
    const st = statSync(model);
    if (st.isDirectory()) {
      const tj = join(model, 'tokenizer.json');
      if (existsSync(tj)) return loadHf(tj);
      const ggufs = readdirSync(model).filter((f) => f.endsWith('.gguf'));
      if (ggufs.length === 1) return loadGguf(join(model, ggufs[0]!), 'gguf');
      throw new Error(`${model}: no tokenizer.json${ggufs.length > 1 ? ` and ${ggufs.length} .gguf files (name one)` : ' or .gguf file'} in this folder`);
    }
    if (model.endsWith('.json')) return loadHf(model);
    return loadGguf(model, 'gguf');
  }
  // Anything path-like that does not exist is a typo, not an Ollama name.
  if (/^(\.{0,2}[\\/]|~)/.test(model) || /\.(gguf|json)$/i.test(model)) throw new Error(`${model}: no such file or folder`);
  const ollama = await resolveOllamaModel(model, options.ollamaModelsDir ? { modelsDir: options.ollamaModelsDir } : {});
  const loaded = await loadGguf(ollama.modelPath, 'ollama', `ollama:${ollama.name}`);
  if (!loaded.template && ollama.template) {
    const builtin = builtinForOllamaTemplate(ollama.template);
    if (builtin) loaded.template = { name: builtin, source: BUILTIN_TEMPLATES[builtin] };
  }
  return loaded;
}

export async function loadModelTokenizer(model: string, options: LoadTokenizerOptions = {}): Promise<ModelTokenizer> {
  const loaded = await loadModel(model, options);
  const specials = {
    ...(loaded.tokenizer.bosToken !== undefined ? { bos_token: loaded.tokenizer.bosToken } : {}),
    ...(loaded.tokenizer.eosToken !== undefined ? { eos_token: loaded.tokenizer.eosToken } : {}),
  };
  let template: ChatTemplate;
  if (options.template !== undefined) {
    const t = options.template;
    if (isBuiltinTemplateName(t)) template = new ChatTemplate(t, BUILTIN_TEMPLATES[t], specials);
    else if (existsSync(t)) template = new ChatTemplate(t, await readFile(t, 'utf8'), specials);
    else throw new Error(`--template ${t}: not a built-in template (chatml, mistral, llama-3, alpaca) nor a file`);
  } else if (loaded.template) {
    template = new ChatTemplate(loaded.template.name, loaded.template.source, specials);
  } else {
    throw new Error(`${model}: the model has no chat template; pass --template chatml|mistral|llama-3|alpaca|<file.jinja>`);
  }
  return { tokenizer: loaded.tokenizer, template, kind: loaded.kind, vocabPath: loaded.vocabPath };
}
