/**
 * A compiled chat template (@huggingface/jinja, the engine transformers.js uses) with the variables
 * HF templates expect.
 */
import { createHash } from 'node:crypto';
import { Template } from '@huggingface/jinja';

export interface TemplateMessage {
  role: string;
  content: string;
}

export interface ChatTemplateSpecials {
  bos_token?: string;
  eos_token?: string;
  pad_token?: string;
  unk_token?: string;
}

/** The template failed on a conversation (raise_exception, a missing field): that record is rejected. */
export class TemplateRenderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateRenderError';
  }
}

export class ChatTemplate {
  readonly sha256: string;
  private readonly compiled: Template;

  constructor(
    /** `chatml`, `tokenizer_config.json`, `gguf:tokenizer.chat_template`, a file path... */
    readonly name: string,
    readonly source: string,
    private readonly specials: ChatTemplateSpecials,
  ) {
    try {
      this.compiled = new Template(source);
    } catch (e) {
      throw new Error(`chat template ${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.sha256 = createHash('sha256').update(source).digest('hex');
  }

  render(messages: readonly TemplateMessage[], addGenerationPrompt = false): string {
    try {
      return this.renderUnchecked(messages, addGenerationPrompt);
    } catch (e) {
      throw new TemplateRenderError(e instanceof Error ? e.message : String(e));
    }
  }

  private renderUnchecked(messages: readonly TemplateMessage[], addGenerationPrompt: boolean): string {
    return this.compiled.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.specials.bos_token ?? '',
      eos_token: this.specials.eos_token ?? '',
      pad_token: this.specials.pad_token ?? '',
      unk_token: this.specials.unk_token ?? '',
    });
  }
}
