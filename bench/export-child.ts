/**
 * One export in a process of its own, so the benchmark can report its peak RSS alone: argv[2] is
 * exportModel()'s options as JSON; prints {"seconds", "commitSeconds", "maxRssBytes", "bytes",
 * "tensors"}, commitSeconds being the time after the last tensor was written (fsync and renames).
 */
import { exportModel } from '../lib/export/export-model.js';

const options = JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof exportModel>[0];
const start = performance.now();
let lastTensor = start;
const result = await exportModel({
  ...options,
  onProgress: (p) => {
    if (p.phase === 'tensors' && p.done === p.total) lastTensor = performance.now();
  },
});
const end = performance.now();
const seconds = (end - start) / 1000;
const commitSeconds = (end - lastTensor) / 1000;
process.stdout.write(`${JSON.stringify({ seconds, commitSeconds, maxRssBytes: process.resourceUsage().maxRSS * 1024, bytes: result.bytes, tensors: result.tensors })}\n`);
