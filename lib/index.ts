export * from './tensor.js';
export * from './device.js';
export * from './io/safetensors.js';
export { native, type DType, type NativeAddon } from './native.js';
