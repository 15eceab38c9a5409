/**
 * Which Ollama Go template a model's Jinja chat template stands for. Two Jinja texts are the same
 * template when their syntax trees are equal (@huggingface/jinja's parser, with the trim_blocks and
 * lstrip_blocks that transformers renders with), so whitespace inside tags, `{%-` trimming, quote
 * style and `message.role` against `message['role']` do not matter; anything else does.
 */
import { parse, tokenize } from '@huggingface/jinja';
import {
  BUILTIN_TEMPLATE_NAMES,
  BUILTIN_TEMPLATES,
  builtinForOllamaTemplate,
  isBuiltinTemplateName,
  type BuiltinTemplateName,
} from '../tokenizer/builtin-templates.js';
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
  return key === undefined ? undefined : knownVariants().get(key);
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
