/**
 * Built-in chat templates (Jinja, rendered by the same engine as model templates). Each puts its
 * end-of-turn token right after the assistant content, so masks can include it.
 * - chatml: dolphin and other ChatML models; matches Ollama's chatml template (reference §6).
 *   No BOS in the text: llama.cpp adds it (add_bos_token), and so do we.
 * - mistral: Mistral-Instruct v0.1/v0.2's own template; a system prompt is put before the first
 *   user message, as Mistral's later templates do.
 * - llama-3: Llama 3 Instruct headers; tool results use the `ipython` role as Llama 3.1 does.
 * - alpaca: the Stanford Alpaca prompt, with EOS ending each response.
 */
export const BUILTIN_TEMPLATE_NAMES = ['chatml', 'mistral', 'llama-3', 'alpaca'] as const;
export type BuiltinTemplateName = (typeof BUILTIN_TEMPLATE_NAMES)[number];

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const MISTRAL =
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set loop_messages = messages[1:] %}" +
  '{% else %}{% set system = none %}{% set loop_messages = messages %}{% endif %}' +
  '{% for message in loop_messages %}' +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('mistral template: roles must alternate user/assistant') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{% if loop.first and system %}{{ '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}" +
  "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}" +
  "{% else %}{{ raise_exception('mistral template: role ' + message['role'] + ' is not supported') }}{% endif %}{% endfor %}";

const LLAMA3 =
  '{{ bos_token }}{% for message in messages %}' +
  "{% if message['role'] == 'tool' %}{% set role = 'ipython' %}{% else %}{% set role = message['role'] %}{% endif %}" +
  "{{ '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const ALPACA =
  "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% set loop_messages = messages[1:] %}" +
  "{% else %}{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n' }}{% set loop_messages = messages %}{% endif %}" +
  "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}" +
  "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}" +
  "{% else %}{{ raise_exception('alpaca template: role ' + message['role'] + ' is not supported') }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}";

export const BUILTIN_TEMPLATES: Record<BuiltinTemplateName, string> = {
  chatml: CHATML,
  mistral: MISTRAL,
  'llama-3': LLAMA3,
  alpaca: ALPACA,
};

export function isBuiltinTemplateName(name: string): name is BuiltinTemplateName {
  return (BUILTIN_TEMPLATE_NAMES as readonly string[]).includes(name);
}

/** Guesses the built-in template an Ollama Go template corresponds to, from its markers. */
export function builtinForOllamaTemplate(goTemplate: string): BuiltinTemplateName | undefined {
  if (goTemplate.includes('<|im_start|>')) return 'chatml';
  if (goTemplate.includes('<|start_header_id|>')) return 'llama-3';
  if (goTemplate.includes('[INST]')) return 'mistral';
  if (goTemplate.includes('### Instruction')) return 'alpaca';
  return undefined;
}
