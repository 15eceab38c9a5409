/** Which backend MLX runs on, the memory it holds, and its limits. */
import { native, type DeviceInfo, type MemoryInfo } from './native.js';

export type { DeviceInfo, MemoryInfo };

/** The device later work runs on: the GPU (Metal, CUDA) where MLX has one, else the CPU. */
export const device = async (): Promise<DeviceInfo> => native().device();
/**
 * Switches the device for later work in the whole process (workers included: they share one MLX
 * thread); "gpu" fails on a build without a GPU backend.
 */
export const useDevice = async (type: 'cpu' | 'gpu'): Promise<void> => native().useDevice(type);
/** Bytes MLX holds now (active), at most since the last reset (peak), in its cache, and its limit. */
export const memory = async (): Promise<MemoryInfo> => native().memory();
/** Returns the previous limit. MLX evaluates graphs to stay under it where it can. */
export const setMemoryLimit = async (bytes: number): Promise<number> => native().setMemoryLimit(bytes);
/** Returns the previous limit; 0 disables MLX's buffer cache. MLX's CPU-only backend has no cache and always answers 0. */
export const setCacheLimit = async (bytes: number): Promise<number> => native().setCacheLimit(bytes);
export const resetPeakMemory = async (): Promise<void> => native().resetPeakMemory();
/** Returns cached buffers to the system. */
export const clearCache = async (): Promise<void> => native().clearCache();
