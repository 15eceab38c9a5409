/**
 * One 7B-shape QLoRA step in a process of its own, so its peaks are its own: argv[2] is
 * {"gguf", "tokens", "rank"} as JSON. Loads the GGUF with LoRA on q/k/v/o, runs one checkpointed
 * accumulateGradients + applyOptimizer on random tokens and prints one JSON line of measurements.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { memory, resetPeakMemory } from '../lib/device.js';
import { loadModel } from '../lib/model/load-model.js';
import { packedBatch } from './step-profile.js';

interface ChildOptions {
  gguf: string;
  tokens: number;
  rank: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as ChildOptions;

/** VmHWM (the resident high-water mark) in bytes. */
function residentPeak(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next reading is the step's own peak. */
function resetResidentPeak(): void {
  writeFileSync('/proc/self/clear_refs', '5');
}

function cpuSeconds(): { user: number; system: number } {
  const u = process.resourceUsage();
  return { user: u.userCPUTime / 1e6, system: u.systemCPUTime / 1e6 };
}

const t0 = performance.now();
const loaded = await loadModel(options.gguf, { lora: { rank: options.rank, alpha: 2 * options.rank, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] } });
const loadSeconds = (performance.now() - t0) / 1000;
const loadPeakRss = residentPeak();
const info = await loaded.native.info();
const batch = packedBatch(1, options.tokens, loaded.architecture.vocabSize, 7, options.tokens);

resetResidentPeak();
await resetPeakMemory();
const cpu0 = cpuSeconds();
const s0 = performance.now();
const step = await loaded.native.accumulateGradients(batch, { checkpoint: true });
await loaded.native.applyOptimizer({ learningRate: 1e-5, maxGradNorm: 1 });
const stepSeconds = (performance.now() - s0) / 1000;
const cpu1 = cpuSeconds();
const result = {
  loadSeconds,
  loadPeakRss,
  stepPeakRss: residentPeak(),
  mlxPeak: (await memory()).peak,
  stepSeconds,
  userSeconds: cpu1.user - cpu0.user,
  systemSeconds: cpu1.system - cpu0.system,
  loss: step.loss / step.tokens,
  baseBytes: info.baseBytes,
  loraBytes: info.loraBytes,
  linearStorage: info.linearStorage,
  processPeakRss: process.resourceUsage().maxRSS * 1024,
};
loaded.dispose();
process.stdout.write(`${JSON.stringify(result)}\n`);
