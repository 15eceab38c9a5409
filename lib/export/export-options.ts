/** exportModel()'s options, validated with zod; each error names the option and its CLI flag. */
import { z } from 'zod';
import { checkpointSpecSchema } from './export-input.js';
import type { GgufExportType } from './tensor-types.js';

/** What `--gguf` writes: the LoRA adapter alone, or the (fused) model in one of llama.cpp's types. */
export type ExportGgufKind = 'adapter' | GgufExportType;
export const EXPORT_GGUF_KINDS = ['adapter', 'f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m'] as const satisfies readonly ExportGgufKind[];

export type ExportProgress =
  | { phase: 'load'; what: string }
  | { phase: 'tensors'; file: string; tensor: string; done: number; total: number; bytes: number }
  | { phase: 'ollama'; status: string; completed?: number | undefined; total?: number | undefined }
  | { phase: 'note'; message: string };

const nonEmpty = z.string().min(1);
const fn = <T>() => z.custom<T>((v) => typeof v === 'function', 'expected a function');

export const exportOptionsSchema = z
  .strictObject({
    run: nonEmpty.optional(),
    checkpoint: checkpointSpecSchema.optional(),
    adapter: nonEmpty.optional(),
    model: nonEmpty.optional(),
    gguf: z.enum(EXPORT_GGUF_KINDS),
    out: nonEmpty.refine((s) => /\.gguf$/i.test(s), 'expected a file name ending in .gguf'),
    peft: nonEmpty.optional(),
    modelfile: z.boolean().default(false),
    ollama: z
      .string()
      .regex(/^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$/, 'expected an Ollama model name such as iceburg-dolphin-mistral-v')
      .optional(),
    /** Ollama's address; default $OLLAMA_HOST or 127.0.0.1:11434. */
    ollamaHost: nonEmpty.optional(),
    /** A file holding an Ollama (Go) template, for bases whose chat template is not one we translate. */
    template: nonEmpty.optional(),
    system: z.string().optional(),
    /** When Ollama refuses the adapter, export and register the fused Q4_K_M model instead. */
    fallback: z.literal('fused').optional(),
    threads: z.int().min(1).max(1024).optional(),
    /** general.name of the written GGUF. */
    name: nonEmpty.optional(),
    adapterDtype: z.enum(['f32', 'f16']).default('f32'),
    ollamaModelsDir: nonEmpty.optional(),
    onProgress: fn<(p: ExportProgress) => void>().optional(),
    signal: z.instanceof(AbortSignal).optional(),
  })
  .superRefine((o, ctx) => {
    const fail = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (o.run === undefined && o.adapter === undefined && o.model === undefined) fail('model', 'nothing to export: give run, adapter or model');
    if (o.run !== undefined && o.adapter !== undefined) fail('adapter', 'give run or adapter, not both');
    if (o.checkpoint !== undefined && o.run === undefined) fail('checkpoint', 'needs run');
    const hasAdapter = o.run !== undefined || o.adapter !== undefined;
    if (o.gguf === 'adapter' && !hasAdapter) fail('gguf', "'adapter' needs an adapter: give run or adapter");
    if (o.peft !== undefined && !hasAdapter) fail('peft', 'needs an adapter: give run or adapter');
    if (o.fallback !== undefined && (o.ollama === undefined || o.gguf !== 'adapter')) fail('fallback', "only applies to gguf 'adapter' with ollama");
    if ((o.template !== undefined || o.system !== undefined) && !o.modelfile && o.ollama === undefined) {
      fail(o.template !== undefined ? 'template' : 'system', 'only applies with modelfile or ollama');
    }
  });

export type ExportOptionsInput = z.input<typeof exportOptionsSchema>;
export type ExportOptions = z.output<typeof exportOptionsSchema>;

const OPTION_FLAGS: Readonly<Record<string, string>> = {
  run: '--run',
  checkpoint: '--checkpoint',
  adapter: '--adapter',
  model: '--model',
  gguf: '--gguf',
  out: '--out',
  peft: '--peft',
  modelfile: '--modelfile',
  ollama: '--ollama',
  template: '--template',
  system: '--system',
  fallback: '--fallback',
  threads: '--threads',
  name: '--name',
};

export function parseExportOptions(input: ExportOptionsInput): ExportOptions {
  const r = exportOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = String(issue.path[0] ?? '');
  const flag = OPTION_FLAGS[key];
  throw new Error(`invalid export option ${issue.path.join('.') || '(options)'}${flag ? ` (${flag})` : ''}: ${issue.message}`);
}
