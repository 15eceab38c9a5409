// The export API: re-exports only.
export { exportModel, modelfilePathFor, fusedPathFor, OllamaRefusedAdapterExportError, type ExportResult, type ExportedFiles } from './export-model.js';
export { parseExportOptions, exportOptionsSchema, EXPORT_GGUF_KINDS, type ExportOptionsInput, type ExportOptions, type ExportProgress, type ExportGgufKind } from './export-options.js';
export { resolveExportInput, baseNamedByAdapter, ExportInputError, type ExportInput, type CheckpointSpec } from './export-input.js';
export { writeGgufModel, type GgufModelInput, type GgufModelExportOptions, type GgufModelProgress } from './gguf-model.js';
export { encodeTensor } from './quantize.js';
export { GGUF_EXPORT_TYPES, fileTypeOf, tensorTypeFor, type GgufExportType } from './tensor-types.js';
export { writeAdapterGguf } from './adapter-gguf.js';
export { writePeftAdapter } from './peft.js';
export { buildModelfile, writeModelfile, type BuiltModelfile, type ModelfileOptions } from './modelfile.js';
export { UnknownChatTemplateError } from './ollama-template-match.js';
export { registerWithOllama, type OllamaRegistration, type OllamaRegisterOptions } from './ollama-register.js';
export { OllamaUnavailableError, OllamaRequestError, OllamaDigestMismatchError, OllamaAdapterRefusedError } from './ollama-errors.js';
