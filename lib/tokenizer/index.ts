export { TextTokenizer, type TokenizerSpec, type OffsetEncoding } from './text-tokenizer.js';
export { ChatTemplate, TemplateRenderError, type TemplateMessage, type ChatTemplateSpecials } from './chat-template.js';
export { BUILTIN_TEMPLATES, BUILTIN_TEMPLATE_NAMES, isBuiltinTemplateName, builtinForOllamaTemplate, type BuiltinTemplateName } from './builtin-templates.js';
export { ConversationEncoder, type EncodedRecord, type TrainOn } from './conversation-encoder.js';
export { renderWithSpans, TemplateSpanError, type ContentSpan, type SpanRender } from './span-render.js';
export { alignTokens, OffsetAlignmentError, type TokenOffsets } from './offsets.js';
export { encodeAtBoundaries } from './boundary-encode.js';
export { tokenizerFromGguf, mergesFromScores, GGUF_TOKEN_TYPE, type GgufTokenizerFiles } from './gguf-vocab.js';
export { loadModelTokenizer, type LoadTokenizerOptions, type ModelTokenizer } from './load-tokenizer.js';
export {
  parseTokenizerJson,
  parseTokenizerConfig,
  configChatTemplate,
  type TokenizerJson,
  type TokenizerConfig,
} from './tokenizer-files.js';
