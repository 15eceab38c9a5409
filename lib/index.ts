// The public API: re-exports only.
export * from './tensor.js';
export * from './device.js';
export * from './io/safetensors.js';
export { native, type DType, type NativeAddon, type NativeModel, type NativeBatch } from './native.js';
export * from './data/index.js';
export * from './tokenizer/index.js';
export { loadModel, type LoadModelOptions, type LoadedModel } from './model/load-model.js';
export { writeFusedModel, type FuseOptions, type FuseResult } from './model/fuse.js';
export { generate, generateTokens, type GenerateOptions, type GenerationResult, type FinishReason } from './model/generate.js';
export { resolveOllamaModel, type OllamaModel } from './source/ollama-store.js';
export { readGguf, writeGguf, type GgufFile } from './gguf/index.js';
export { train, type RunHandle, type TrainOptions } from './train/trainer.js';
export { loadTrainConfig, parseTrainConfig } from './config/load-config.js';
export type { TrainConfig, TrainConfigInput } from './config/train-config.js';
export type { RunEvent } from './train/run-events.js';
export { datasetLoss } from './eval/dataset-loss.js';
export * from './export/index.js';
