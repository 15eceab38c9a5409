/**
 * `npm run bench -- prepare`: prepare on generated ICEBURG-style corpora (100k and 1M
 * conversations, dolphin-like ChatML over a real 32k SentencePiece vocabulary, default options:
 * exact + near dedupe, 5/5 % splits, max_seq_length 2048). Each run is a child process, so its
 * peak RSS (getrusage maxrss) is its own. Streaming means the 1M run's peak stays within 1.2x of
 * the 100k run's.
 *
 * The same file is the child: with MLXQ_PREPARE_BENCH_CHILD set it runs one prepare and prints JSON.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchTable } from './table.js';

interface ChildResult {
  records: number;
  seconds: number;
  megabytes: number;
  tokens: number;
  maxRssMB: number;
  bucketPadding: number;
  packPadding: number;
  duplicates: number;
}

async function runChild(): Promise<void> {
  const { prepareDataset } = await import('../lib/data/prepare.js');
  const { chatmlModel } = await import('../test/fixtures/data-model.js');
  const started = performance.now();
  const { report, manifest } = await prepareDataset({ inputs: [process.env.MLXQ_CORPUS!], outDir: process.env.MLXQ_OUT! }, { tokenizer: chatmlModel() });
  const seconds = (performance.now() - started) / 1000;
  const result: ChildResult = {
    records: Object.values(report.recordsByFormat).reduce((a, b) => a + b, 0),
    seconds,
    megabytes: report.bytes / 1e6,
    tokens: manifest.splits.train.tokens + manifest.splits.valid.tokens + manifest.splits.test.tokens,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    bucketPadding: report.batching.bucketPaddingFraction,
    packPadding: report.batching.packPaddingFraction,
    duplicates: report.duplicates.exact + report.duplicates.near,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function prepareInChild(corpus: string, out: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, MLXQ_PREPARE_BENCH_CHILD: '1', MLXQ_CORPUS: corpus, MLXQ_OUT: out },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`prepare child exited with ${code}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as ChildResult);
    });
  });
}

export default async function bench(): Promise<BenchTable> {
  const { writeSyntheticCorpus } = await import('../test/fixtures/data-corpus.js');
  const dir = mkdtempSync(join(tmpdir(), 'mlxq-prepare-bench-'));
  try {
    const small = join(dir, 'corpus-100k.jsonl');
    await writeSyntheticCorpus(small, 100_000);
    const r100k = await prepareInChild(small, join(dir, 'out-100k'));
    rmSync(join(dir, 'out-100k'), { recursive: true, force: true });
    rmSync(small);
    const big = join(dir, 'corpus-1m.jsonl');
    await writeSyntheticCorpus(big, 1_000_000);
    const r1m = await prepareInChild(big, join(dir, 'out-1m'));
    return {
      title: 'prepare: ICEBURG-style JSONL → shards (ChatML, 32k SentencePiece vocab, default options)',
      rows: [
        { name: '100k conversations: records/s', value: r100k.records / r100k.seconds, unit: 'records/s' },
        { name: '100k conversations: input MB/s', value: r100k.megabytes / r100k.seconds, unit: 'MB/s' },
        { name: '100k conversations: tokens/s', value: r100k.tokens / r100k.seconds, unit: 'tokens/s' },
        { name: '100k conversations: peak RSS', value: r100k.maxRssMB, unit: 'MB' },
        { name: '1M conversations: records/s', value: r1m.records / r1m.seconds, unit: 'records/s' },
        { name: '1M conversations: peak RSS (vs 100k)', value: r1m.maxRssMB, unit: 'MB', baseline: r100k.maxRssMB, baselineLabel: '100k', goal: { op: '<=', target: 1.2 } },
        { name: 'padding fraction, length-bucketed (4 rows)', value: r1m.bucketPadding, unit: 'fraction' },
        { name: 'padding fraction, packed (4 rows × 2047)', value: r1m.packPadding, unit: 'fraction' },
      ],
      notes: [
        `100k: ${r100k.megabytes.toFixed(0)} MB in ${r100k.seconds.toFixed(1)} s; 1M: ${r1m.megabytes.toFixed(0)} MB in ${r1m.seconds.toFixed(1)} s`,
        `mean ${(r1m.tokens / r1m.records).toFixed(0)} tokens per conversation; ${r1m.duplicates} duplicates found in the 1M corpus (none planted)`,
        'padding figures are for the first 100k train records, planned as the trainer would (bucket windows of 32 batches)',
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env.MLXQ_PREPARE_BENCH_CHILD === '1') await runChild();
