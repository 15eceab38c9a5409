/**
 * Which Ollama Go template a model's Jinja chat template stands for. Two Jinja texts are the same
 * template when their syntax trees are equal (@huggingface/jinja's parser, with the trim_blocks and
 * lstrip_blocks that transformers renders with), so whitespace inside tags, `{%-` trimming, quote
 * style and `message.role` against `message['role']` do not matter; anything else does. A template
 * no known text matches is still taken for a format when it renders probe conversations exactly as
 * that format's built-in does (a leading BOS aside: llama.cpp and Ollama add it themselves).
 */
import { parse, tokenize } from '@huggingface/jinja';
import {
  BUILTIN_TEMPLATE_NAMES,
  BUILTIN_TEMPLATES,
  builtinForOllamaTemplate,
  isBuiltinTemplateName,
  type BuiltinTemplateName,
} from '../tokenizer/builtin-templates.js';
import { ChatTemplate, type TemplateMessage } from '../tokenizer/chat-template.js';
import { KNOWN_JINJA_VARIANTS, OLLAMA_TEMPLATES } from './ollama-templates.js';

/** The model's chat template is none we can translate; the user must give a Go template. */
export class UnknownChatTemplateError extends Error {
  constructor(detail: string) {
    super(
      `${detail}. Known formats: ${BUILTIN_TEMPLATE_NAMES.join(', ')}. ` +
        'Give Ollama a Go template yourself with --template FILE (see template/*.gotmpl in the ollama repository).',
    );
    this.name = 'UnknownChatTemplateError';
  }
}

/** The syntax tree of a Jinja template as a string, or undefined when it does not parse. */
export function canonicalJinja(source: string): string | undefined {
  try {
    const program = parse(tokenize(source, { lstrip_blocks: true, trim_blocks: true }));
    return JSON.stringify(program, (_key, value: unknown) => memberAsSubscript(value));
  } catch {
    return undefined;
  }
}

/** `a.b` and `a['b']` read the same field of a message dict. */
function memberAsSubscript(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const node = value as { type?: unknown; computed?: unknown; property?: { type?: unknown; value?: unknown } };
  if (node.type === 'MemberExpression' && node.computed === false && node.property?.type === 'Identifier') {
    return { ...node, computed: true, property: { type: 'StringLiteral', value: node.property.value } };
  }
  return value;
}

let variantIndex: Map<string, BuiltinTemplateName> | undefined;

function knownVariants(): Map<string, BuiltinTemplateName> {
  if (variantIndex) return variantIndex;
  variantIndex = new Map();
  for (const name of BUILTIN_TEMPLATE_NAMES) {
    for (const source of [BUILTIN_TEMPLATES[name], ...KNOWN_JINJA_VARIANTS[name]]) {
      const key = canonicalJinja(source);
      if (key === undefined) throw new Error(`built-in Jinja variant of ${name} does not parse`);
      variantIndex.set(key, name);
    }
  }
  return variantIndex;
}

/** The built-in format a Jinja chat template (or a built-in's name) is, if we know it. */
export function builtinForJinja(chatTemplate: string): BuiltinTemplateName | undefined {
  if (isBuiltinTemplateName(chatTemplate)) return chatTemplate;
  const key = canonicalJinja(chatTemplate);
  if (key === undefined) return undefined;
  return knownVariants().get(key) ?? builtinRenderingAlike(chatTemplate);
}

const PROBE_SPECIALS = { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>' };
const PROBES: { messages: TemplateMessage[]; generate: boolean; systemTurn: boolean }[] = [
  {
    messages: [
      { role: 'user', content: 'Hello there.' },
      { role: 'assistant', content: 'Hi! How can I help?' },
      { role: 'user', content: 'Tell me a joke.' },
    ],
    generate: true,
    systemTurn: false,
  },
  { messages: [{ role: 'user', content: 'Q1' }, { role: 'assistant', content: 'A1' }], generate: false, systemTurn: false },
  {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello.' },
      { role: 'assistant', content: 'Hi.' },
      { role: 'user', content: 'Again.' },
    ],
    generate: true,
    systemTurn: true,
  },
];

function render(t: ChatTemplate, messages: TemplateMessage[], generate: boolean): string | undefined {
  try {
    const text = t.render(messages, generate);
    return text.startsWith(PROBE_SPECIALS.bos_token) ? text.slice(PROBE_SPECIALS.bos_token.length) : text;
  } catch {
    return undefined;
  }
}

/**
 * The built-in whose renderings of the probes the template reproduces. A template may refuse the
 * system turn (Mistral's original one raises on it) but must render the others.
 */
function builtinRenderingAlike(source: string): BuiltinTemplateName | undefined {
  let candidate: ChatTemplate;
  try {
    candidate = new ChatTemplate('candidate', source, PROBE_SPECIALS);
  } catch {
    return undefined;
  }
  return BUILTIN_TEMPLATE_NAMES.find((name) => {
    const builtin = new ChatTemplate(name, BUILTIN_TEMPLATES[name], PROBE_SPECIALS);
    return PROBES.every(({ messages, generate, systemTurn }) => {
      const got = render(candidate, messages, generate);
      if (got === undefined) return systemTurn;
      return got === render(builtin, messages, generate);
    });
  });
}

export interface ResolvedOllamaTemplate {
  /** The Go template for TEMPLATE / the create request. */
  goTemplate: string;
  stop: string[];
  /** The built-in format, when known (undefined for a user's Go template we cannot place). */
  format?: BuiltinTemplateName;
}

/**
 * The Go template and stop words: the user's Go template when given (stops from its markers when we
 * recognise them), else the translation of the model's Jinja chat template.
 */
export function resolveOllamaTemplate(o: { chatTemplate?: string; template?: string }): ResolvedOllamaTemplate {
  if (o.template !== undefined) {
    if (o.template.trim() === '') throw new UnknownChatTemplateError('the Go template given with --template is empty');
    const format = builtinForOllamaTemplate(o.template);
    return { goTemplate: o.template, stop: format ? [...OLLAMA_TEMPLATES[format].stop] : [], format };
  }
  if (o.chatTemplate === undefined || o.chatTemplate.trim() === '') {
    throw new UnknownChatTemplateError('the model has no chat template (tokenizer.chat_template)');
  }
  const format = builtinForJinja(o.chatTemplate);
  if (!format) {
    const head = o.chatTemplate.slice(0, 80).replace(/\s+/g, ' ');
    throw new UnknownChatTemplateError(`the model's chat template is not one we can translate to Ollama's Go templates ("${head}…")`);
  }
  const known = OLLAMA_TEMPLATES[format];
  return { goTemplate: known.goTemplate, stop: [...known.stop], format };
}
