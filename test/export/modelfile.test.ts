import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildModelfile, writeModelfile } from '../../lib/export/modelfile.js';
import { builtinForJinja, UnknownChatTemplateError } from '../../lib/export/ollama-template-match.js';
import { BUILTIN_TEMPLATES, BUILTIN_TEMPLATE_NAMES, type BuiltinTemplateName } from '../../lib/tokenizer/builtin-templates.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Ollama's Modelfile parser (parser/parser.go ParseFile at fb30760), rewritten here from its state
 * machine: a value ends at a space or newline once the trimmed text so far unquotes (`"""…"""`,
 * `"…"` or bare); runes Go's strconv.IsPrint rejects are dropped outside those transitions.
 */
function parseModelfile(text: string): { name: string; args: string }[] {
  type State = 'nil' | 'name' | 'value' | 'parameter' | 'comment';
  const isSpace = (r: string) => r === ' ' || r === '\t';
  const isNewline = (r: string) => r === '\r' || r === '\n';
  const isPrint = (r: string) => /[\p{L}\p{M}\p{N}\p{P}\p{S} ]/u.test(r);
  const unquote = (s: string): [string, boolean] => {
    if (s.startsWith('"""')) return s.length >= 6 && s.endsWith('"""') ? [s.slice(3, -3), true] : ['', false];
    if (s.startsWith('"')) return s.length >= 2 && s.endsWith('"') ? [s.slice(1, -1), true] : ['', false];
    return [s, true];
  };
  const commands: { name: string; args: string }[] = [];
  let state: State = 'nil';
  let buf = '';
  let name = '';
  const next = (r: string): State => {
    switch (state) {
      case 'nil':
        return r === '#' ? 'comment' : isSpace(r) || isNewline(r) ? 'nil' : 'name';
      case 'name':
        if (/[A-Za-z]/.test(r)) return 'name';
        if (isSpace(r)) return 'value';
        throw new Error(`invalid command at ${JSON.stringify(r)}`);
      case 'value':
        return isNewline(r) || isSpace(r) ? 'nil' : 'value';
      case 'parameter':
        if (/[A-Za-z0-9_]/.test(r)) return 'parameter';
        if (isSpace(r)) return 'value';
        throw new Error('bad parameter');
      case 'comment':
        return isNewline(r) ? 'nil' : 'comment';
    }
  };
  for (const r of text) {
    let to = next(r);
    let keep = state === 'nil' ? to === 'name' : state === 'comment' ? false : to === state || (state === 'value' && to === 'nil');
    if (to !== state) {
      if (state === 'name') {
        const cmd = buf.toLowerCase();
        if (cmd === 'parameter') to = 'parameter';
        else name = cmd === 'from' ? 'model' : cmd;
        keep = false;
      } else if (state === 'parameter') {
        name = buf;
        keep = false;
      } else if (state === 'value') {
        const [s, ok] = unquote(buf.trim());
        if (!ok || isSpace(r)) {
          buf += r;
          continue;
        }
        commands.push({ name, args: s });
        keep = false;
      }
      buf = '';
      state = to;
    }
    if (keep && isPrint(r)) buf += r;
  }
  if (state === 'value') {
    const [s, ok] = unquote(buf.trim());
    if (!ok) throw new Error('unexpected EOF');
    commands.push({ name, args: s });
  }
  return commands;
}

/** git's blob id of a text: what `git ls-tree` lists for the file. */
function gitBlobId(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** `git ls-tree fb30760996871fa9460115c753afd2c60d4ab0f7 template/` of github.com/ollama/ollama. */
const OLLAMA_TEMPLATE_BLOBS: Record<BuiltinTemplateName, { file: string; blob: string }> = {
  chatml: { file: 'template/chatml.gotmpl', blob: '43207ab145c2aeae8b7168fc7ee43984bbee77ae' },
  mistral: { file: 'template/mistral-instruct.gotmpl', blob: '7a6ecdfd82e61b5bff69598a0c739f4a3b0de0fe' },
  'llama-3': { file: 'template/llama3-instruct.gotmpl', blob: '305ae403bd1b6d4a9b37ec87029da74dd366bfc0' },
  alpaca: { file: 'template/alpaca.gotmpl', blob: '004397367efeeb5d71516d81502bcdebf1d73fae' },
};
const OLLAMA_MIRROR = '/work/.mirror/ollama+ollama/repo';

const argsOf = (cmds: { name: string; args: string }[], name: string) => cmds.filter((c) => c.name === name).map((c) => c.args);

describe('buildModelfile', () => {
  for (const format of BUILTIN_TEMPLATE_NAMES) {
    it(`${format}: TEMPLATE is Ollama's shipped template byte for byte, read back by Ollama's parser`, () => {
      const built = buildModelfile({ from: './model.gguf', chatTemplate: BUILTIN_TEMPLATES[format], system: 'You are ICEBURG.' });
      const cmds = parseModelfile(built.text);
      const [template] = argsOf(cmds, 'template');
      expect(template).toBe(built.template);
      expect(gitBlobId(template!)).toBe(OLLAMA_TEMPLATE_BLOBS[format].blob);
      if (existsSync(OLLAMA_MIRROR)) {
        const shipped = execFileSync('git', ['-C', OLLAMA_MIRROR, 'show', `fb30760996871fa9460115c753afd2c60d4ab0f7:${OLLAMA_TEMPLATE_BLOBS[format].file}`]);
        expect(Buffer.from(template!, 'utf8').equals(shipped)).toBe(true);
      }
      expect(argsOf(cmds, 'model')).toEqual(['./model.gguf']);
      expect(argsOf(cmds, 'system')).toEqual(['You are ICEBURG.']);
      expect(argsOf(cmds, 'temperature')).toEqual(['0.7']);
      expect(argsOf(cmds, 'top_p')).toEqual(['0.9']);
      expect(argsOf(cmds, 'stop')).toEqual(built.stop);
    });
  }

  it('stop words are the turn markers of each format', () => {
    const stops = (f: BuiltinTemplateName) => buildModelfile({ from: 'x', chatTemplate: BUILTIN_TEMPLATES[f] }).stop;
    expect(stops('chatml')).toEqual(['<|im_start|>', '<|im_end|>']);
    expect(stops('mistral')).toEqual(['[INST]', '[/INST]', '</s>']);
    expect(stops('llama-3')).toEqual(['<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>']);
    expect(stops('alpaca')).toEqual(['### Instruction:', '### Response']);
  });

  it('recognises real-world variants and rewritten whitespace, and nothing else', () => {
    // dolphin-2.8-mistral-7b-v02 after its HF PR #10 (ChatML with BOS), as Ollama's index.json lists it.
    const dolphin =
      "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    expect(builtinForJinja(dolphin)).toBe('chatml');
    const spaced = "{%- for message in messages -%}\n  {{ \"<|im_start|>\" + message.role + \"\\n\" + message.content + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    expect(builtinForJinja(spaced)).toBe('chatml');
    const llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    expect(builtinForJinja(llama3)).toBe('llama-3');
    // Written differently, rendering the same: recognised by rendering probe conversations.
    const merged =
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    expect(builtinForJinja(merged)).toBe('chatml');
    const tilde =
      "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\n\n' ~ m.content | trim ~ '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    expect(builtinForJinja(tilde)).toBe('llama-3');
    // ChatML that adds a default system prompt (Qwen's) is not plain ChatML: Ollama's chatml template would drop it.
    const qwen =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    expect(builtinForJinja(qwen)).toBeUndefined();
    // Nor is one that drops system turns, or one that renders nothing at all.
    const noSystem =
      "{% for message in messages %}{% if message['role'] != 'system' %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    expect(builtinForJinja(noSystem)).toBeUndefined();
    expect(builtinForJinja("{{ raise_exception('no chat here') }}")).toBeUndefined();
    // Text that differs in what it renders is not the same template.
    expect(builtinForJinja(spaced.replace("'<|im_end|>'", "'<|im_end|> '"))).toBeUndefined();
    expect(builtinForJinja(BUILTIN_TEMPLATES.chatml.replace('<|im_start|>assistant', '<|im_start|>bot'))).toBeUndefined();
  });

  it('an unknown chat template is a clear error that asks for --template', () => {
    const zephyr = "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}{% endfor %}";
    expect(() => buildModelfile({ from: 'x', chatTemplate: zephyr })).toThrow(UnknownChatTemplateError);
    expect(() => buildModelfile({ from: 'x', chatTemplate: zephyr })).toThrow(/--template FILE/);
    expect(() => buildModelfile({ from: 'x' })).toThrow(/no chat template/);
  });

  it("a user's Go template is written as given; stops come from its markers when known", () => {
    const go = '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n';
    const built = buildModelfile({ from: 'x', template: go, chatTemplate: 'not used' });
    expect(argsOf(parseModelfile(built.text), 'template')).toEqual([go]);
    expect(built.stop).toEqual(['<|im_start|>', '<|im_end|>']);
    expect(buildModelfile({ from: 'x', template: 'USER: {{ .Prompt }}\nBOT: ' }).stop).toEqual([]);
  });

  it('adapter mode: FROM the base name and ADAPTER the GGUF', () => {
    const built = buildModelfile({ from: 'dolphin-mistral:7b', adapter: './adapter.gguf', chatTemplate: 'chatml' });
    const cmds = parseModelfile(built.text);
    expect(argsOf(cmds, 'model')).toEqual(['dolphin-mistral:7b']);
    expect(argsOf(cmds, 'adapter')).toEqual(['./adapter.gguf']);
    expect(cmds.map((c) => c.name).slice(0, 3)).toEqual(['model', 'adapter', 'template']);
  });

  it('quotes values so that the parser reads them back exactly; refuses what it cannot carry', () => {
    const values = [
      'Line one.\nLine "two" with quotes.\n  indented',
      '  leading and trailing spaces  ',
      '"starts with a quote',
      'ends with a quote"',
      '""',
      'tabs\tinside\tand émoji 🧊 and 日本語',
      'windows\r\nline end',
    ];
    for (const system of values) {
      const built = buildModelfile({ from: 'x', chatTemplate: 'chatml', system, parameters: { stop: [system.replace(/[\r\n]/g, ' ')] } });
      const cmds = parseModelfile(built.text);
      expect(argsOf(cmds, 'system')).toEqual([system]);
      expect(argsOf(cmds, 'stop').at(-1)).toBe(system.replace(/[\r\n]/g, ' '));
    }
    expect(() => buildModelfile({ from: 'x', chatTemplate: 'chatml', system: 'a """ b' })).toThrow(/"""/);
    expect(() => buildModelfile({ from: 'x', chatTemplate: 'chatml', system: 'family 👨\u200D👩' })).toThrow(/U\+200D/);
    expect(() => buildModelfile({ from: 'x', chatTemplate: 'chatml', system: 'bell \x07' })).toThrow(/U\+0007/);
    expect(() => buildModelfile({ from: 'a\nb', chatTemplate: 'chatml' })).toThrow(/FROM/);
    expect(() => buildModelfile({ from: 'x', chatTemplate: 'chatml', parameters: { 'bad-name': 1 } })).toThrow(/bad-name/);
  });

  it('parameters: defaults, overrides, extra stops without repeats, numbers as numbers', () => {
    const built = buildModelfile({
      from: 'x',
      chatTemplate: 'chatml',
      parameters: { temperature: 0.2, num_ctx: 4096, stop: ['<|im_end|>', '</s>'] },
    });
    expect(built.parameters).toEqual({ stop: ['<|im_start|>', '<|im_end|>', '</s>'], temperature: 0.2, top_p: 0.9, num_ctx: 4096 });
    const cmds = parseModelfile(built.text);
    expect(argsOf(cmds, 'stop')).toEqual(['<|im_start|>', '<|im_end|>', '</s>']);
    expect(argsOf(cmds, 'temperature')).toEqual(['0.2']);
    expect(argsOf(cmds, 'num_ctx')).toEqual(['4096']);
    // What `ollama create -f` sends (parser.go CreateRequest: stop gathered into an array, numbers
    // parsed) equals the parameters registerWithOllama sends.
    const viaModelfile: Record<string, number | string[]> = {};
    for (const c of cmds) {
      if (['model', 'adapter', 'template', 'system'].includes(c.name)) continue;
      if (c.name === 'stop') viaModelfile.stop = [...((viaModelfile.stop as string[] | undefined) ?? []), c.args];
      else viaModelfile[c.name] = Number(c.args);
    }
    expect(viaModelfile).toEqual(built.parameters);
  });

  it('writeModelfile writes the text atomically, with FROM relative to the Modelfile', async () => {
    const dir = tempDir('modelfile-');
    const built = await writeModelfile(join(dir, 'Modelfile'), { from: join(dir, 'model-q4_k_m.gguf'), chatTemplate: 'chatml' });
    const text = readFileSync(join(dir, 'Modelfile'), 'utf8');
    expect(text).toBe(built.text);
    expect(argsOf(parseModelfile(text), 'model')).toEqual(['./model-q4_k_m.gguf']);
  });
});
