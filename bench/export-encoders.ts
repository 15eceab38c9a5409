/**
 * The block encoders alone, one thread each: our transcoder (F32 rows from a file → type) against
 * ggml_quantize_chunk of the llama.cpp node-llama-cpp ships (the oracle's `time` command) on the
 * same rows, best of several runs each, measured one after the other in the same run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { transcodeTensor } from '../lib/export/transcode.js';
import type { LlamaQuantizeOracle } from '../test/fixtures/llama-quantize-oracle.js';
import type { BenchRow } from './table.js';

const ROWS = 256;
const COLS = 4096;
const REPEATS = 5;
const TYPES = ['F16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'] as const;

/** Weight-like rows: small uniform noise with a few outliers, as trained matrices have. */
function weightRows(): Float32Array {
  const values = new Float32Array(ROWS * COLS);
  let s = 1;
  for (let i = 0; i < values.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    values[i] = (s / 2 ** 32 - 0.5) * 0.05 + (i % 97 === 0 ? 0.3 : 0);
  }
  return values;
}

async function bestSeconds(run: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < REPEATS; r++) {
    const start = performance.now();
    await run();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

export async function encoderRows(oracle: LlamaQuantizeOracle): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'mlxq-encoder-bench-'));
  try {
    const values = weightRows();
    const path = join(dir, 'rows.f32');
    await writeFile(path, new Uint8Array(values.buffer));
    const rows: BenchRow[] = [];
    for (const type of TYPES) {
      const theirs = await oracle.timeQuantize(type, values, COLS, REPEATS);
      const ours = await bestSeconds(() => transcodeTensor({ path, offset: 0, type: 'F32' }, [ROWS, COLS], type, { threads: 1 }));
      rows.push({ name: `encoder ${type}, 1 thread, ${ROWS}×${COLS} f32 rows`, value: ours * 1000, unit: 'ms', baseline: theirs * 1000, baselineLabel: 'ggml_quantize_chunk', goal: { op: '<=', target: 1 } });
    }
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
