/**
 * One export in a process of its own, so the benchmark can report its peak RSS alone: argv[2] is
 * exportModel()'s options as JSON; prints {"seconds", "maxRssBytes", "bytes", "tensors"}.
 */
import { exportModel } from '../lib/export/export-model.js';

const options = JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof exportModel>[0];
const start = performance.now();
const result = await exportModel(options);
const seconds = (performance.now() - start) / 1000;
process.stdout.write(`${JSON.stringify({ seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024, bytes: result.bytes, tensors: result.tensors })}\n`);
