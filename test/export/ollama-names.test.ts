import { describe, expect, it } from 'vitest';
import { isAdapterRefusalMessage } from '../../lib/export/ollama-errors.js';
import { goUnquote, parseShowParameters } from '../../lib/export/ollama-show.js';
import { baseModelName, checkOllamaModelName, isVersionedName, nextVersionedName } from '../../lib/export/ollama-versions.js';

describe('versioned names', () => {
  it('only a tagless name ending in -v asks for a version', () => {
    expect(isVersionedName('iceburg-dolphin-mistral-v')).toBe(true);
    expect(isVersionedName('iceburg-dolphin-mistral-V')).toBe(true);
    expect(isVersionedName('iceburg-dolphin-mistral-v1')).toBe(false);
    expect(isVersionedName('iceburg-v:latest')).toBe(false);
    expect(isVersionedName('iceburg-dev')).toBe(false);
  });

  it('reads versions across tags, default registry and namespace, and case', () => {
    expect(baseModelName('registry.ollama.ai/library/Iceburg-v2:latest')).toBe('iceburg-v2');
    expect(baseModelName('myhost:5000/team/iceburg-v2:q4')).toBe('myhost:5000/team/iceburg-v2');
    const listed = ['ICEBURG-V1:latest', 'registry.ollama.ai/library/iceburg-v2:latest', 'iceburg-v5:q8_0', 'team/iceburg-v9:latest', 'iceburg-v05:latest'];
    expect(nextVersionedName('iceburg-v', listed)).toEqual({ name: 'iceburg-v6', version: 6 });
    expect(nextVersionedName('team/iceburg-v', listed)).toEqual({ name: 'team/iceburg-v10', version: 10 });
    expect(nextVersionedName('iceburg-v', [])).toEqual({ name: 'iceburg-v1', version: 1 });
  });
});

describe('model names', () => {
  it('takes what Ollama takes and refuses the rest', () => {
    for (const ok of ['iceburg-dolphin-mistral-v', 'iceburg:latest', 'team/iceburg:q4_k_m', 'localhost:5000/team/iceburg:v1.2', 'a.b_c-d']) {
      expect(() => checkOllamaModelName(ok), ok).not.toThrow();
    }
    for (const bad of ['', 'has space', '-leading-dash', 'a/b/c/d', 'x:', 'x:-tag', 'ü-model']) {
      expect(() => checkOllamaModelName(bad), bad).toThrow(/not an Ollama model name/);
    }
  });
});

describe("Ollama's show parameters", () => {
  it('unquotes Go string literals (strconv.Quote output)', () => {
    expect(goUnquote('"<|im_end|>"')).toBe('<|im_end|>');
    expect(goUnquote('"a\\tb\\"c\\\\d\\x1b\\u00a0é\\U0001F9CA\\n"')).toBe('a\tb"c\\d\x1b\u00a0é🧊\n');
    expect(() => goUnquote('"bad\\q"')).toThrow(/unknown escape/);
  });

  it('collects repeated names, numbers as printed', () => {
    const text = ['stop                           "<|im_start|>"', 'stop                           "<|im_end|>"', 'temperature                    0.7', 'num_ctx                        4096'].join('\n');
    const p = parseShowParameters(text);
    expect(p.get('stop')).toEqual(['<|im_start|>', '<|im_end|>']);
    expect(p.get('temperature')).toEqual(['0.7']);
    expect(p.get('num_ctx')).toEqual(['4096']);
  });
});

describe('adapter refusal messages', () => {
  it('names adapters or LoRA, not the transport', () => {
    expect(isAdapterRefusalMessage('ADAPTER is no longer supported')).toBe(true);
    expect(isAdapterRefusalMessage('only one adapter is currently supported')).toBe(true);
    expect(isAdapterRefusalMessage('loras are not yet implemented')).toBe(true);
    expect(isAdapterRefusalMessage('digest mismatch, expected "sha256:aa", got "sha256:bb" (adapter.gguf)')).toBe(false);
    expect(isAdapterRefusalMessage("model 'dolphin-mistral:7b' not found")).toBe(false);
    expect(isAdapterRefusalMessage('no space left on device')).toBe(false);
  });
});
