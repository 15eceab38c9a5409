/** What a training checkpoint holds besides the trainer state: adapter, adapter config, optimizer. */
import { writeFile } from 'node:fs/promises';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { NativeModel } from '../native.js';
import { tensor, toTypedArray } from '../tensor.js';
import { ADAPTER_CONFIG_FILE, serializeAdapterConfig, type AdapterConfig } from '../model/adapter-config.js';
import type { CheckpointFileWriter } from './checkpoint-store.js';

export const ADAPTER_FILE = 'adapters.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const CHECKPOINT_FILES = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, OPTIMIZER_FILE] as const;

/** Writers for the adapter files alone (a checkpoint, or the run's final adapter folder). */
export function adapterWriters(model: NativeModel, adapterConfig: AdapterConfig): CheckpointFileWriter[] {
  return [
    {
      name: ADAPTER_FILE,
      write: async (path) => {
        const params = await model.loraParameters();
        try {
          await saveSafetensors(path, params, { format: 'mlx' });
        } finally {
          for (const t of Object.values(params)) t.dispose();
        }
      },
    },
    { name: ADAPTER_CONFIG_FILE, write: (path) => writeFile(path, serializeAdapterConfig(adapterConfig)) },
  ];
}

export function checkpointWriters(model: NativeModel, adapterConfig: AdapterConfig): CheckpointFileWriter[] {
  return [
    ...adapterWriters(model, adapterConfig),
    {
      name: OPTIMIZER_FILE,
      write: async (path) => {
        const { step, tensors } = await model.optimizerState();
        // The update count goes in as a tensor too, so the file is never empty (no update yet).
        const stepTensor = await tensor(Int32Array.from([step]));
        try {
          await saveSafetensors(path, { ...tensors, step: stepTensor }, { format: 'mlx-qlora-adamw' });
        } finally {
          stepTensor.dispose();
          for (const t of Object.values(tensors)) t.dispose();
        }
      },
    },
  ];
}

/** Restores LoRA parameters and AdamW state from a checkpoint's files. */
export async function restoreCheckpoint(model: NativeModel, files: Readonly<Record<string, string>>): Promise<void> {
  const adapter = await loadSafetensors(files[ADAPTER_FILE]!);
  try {
    await model.setLoraParameters(adapter.tensors);
  } finally {
    for (const t of Object.values(adapter.tensors)) t.dispose();
  }
  const optimizer = await loadSafetensors(files[OPTIMIZER_FILE]!);
  try {
    const { step: stepTensor, ...moments } = optimizer.tensors;
    if (!stepTensor) throw new Error(`${files[OPTIMIZER_FILE]}: no 'step' tensor`);
    const step = ((await toTypedArray(stepTensor)) as Int32Array)[0]!;
    await model.setOptimizerState(moments, step);
  } finally {
    for (const t of Object.values(optimizer.tensors)) t.dispose();
  }
}
