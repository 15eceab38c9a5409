/**
 * The prepare report: counters and fixed-size histograms filled while streaming (memory does not
 * grow with the corpus), written as report.json and printed as a summary a person can check.
 */
import type { RejectionReason } from './errors.js';
import type { SplitName } from './split.js';

export interface PrepareReport {
  files: number;
  lines: number;
  blankLines: number;
  bytes: number;
  recordsByFormat: Record<string, number>;
  /** Lines and records rejected for what they contain (bad JSON, bad schema, template errors). */
  errors: Partial<Record<RejectionReason, number>>;
  /** Valid records left out by the filters you chose (quality, messages, length). */
  filtered: Partial<Record<RejectionReason, number>>;
  /** The first rejections as `file:line: reason: message`; all of them are in rejections.jsonl. */
  rejectionExamples: string[];
  /**
   * The detailed counters summed: every non-blank line that is not a quality_metrics line is
   * exactly one of rejected (the sum of `errors`), filtered (of `filtered`), duplicates (exact +
   * near) or kept (records written, all splits).
   */
  totals: { rejected: number; filtered: number; duplicates: number; kept: number };
  quality: {
    scored: number;
    unscored: number;
    /** Ten bins of width 0.1 over [0, 1]; 1.0 falls in the last. */
    histogram: number[];
    metricsRead: number;
    /** Metrics lines without a quality_score: they leave the conversation's own score (quality-join.ts). */
    metricsWithoutScore: number;
    metricsJoined: number;
    metricsUnmatched: number;
  };
  /** truncated: cut to max_seq_length and kept; truncatedAway: cut so that nothing trained was left. */
  length: { maxSeqLength: number; truncated: number; truncatedAway: number; dropped: number };
  duplicates: {
    exact: number;
    near: number;
    /** How near duplicates were found (minhash.ts lshParams); null when off. */
    nearDetection: { threshold: number; acceptAt: number; bands: number; rows: number; permutations: number } | null;
    /** Pairs that shared an LSH band and were compared by signature, and how many were accepted. */
    nearCandidates: number;
    nearAccepted: number;
    examples: Array<{ kind: 'exact' | 'near'; removed: string; kept: string }>;
  };
  /** Token counts of the records written, over all splits. */
  tokenLength: { records: number; mean: number; p50: number; p90: number; p95: number; p99: number; max: number };
  /** Messages per conversation → count (records written; text records count as 1). */
  turnsPerConversation: Record<string, number>;
  splits: Record<SplitName, { records: number; tokens: number; trainedTokens: number }>;
  batching: { batchSize: number; maxSeqLength: number; bucketPaddingFraction: number; packFillRatio: number; packPaddingFraction: number };
  emitted: Record<string, number>;
  notRepresentable: Record<string, number>;
  /** Per emit format: records written with a weight-0 turn as an extra `weight` key the format lacks. */
  emittedWithExtraWeight: Record<string, number>;
  elapsedSeconds: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
}

export const MAX_EXAMPLES = 20;

/** Exact percentiles from a count-per-length histogram. */
export class LengthHistogram {
  private readonly counts: Uint32Array;
  private total = 0;
  private sum = 0;
  private maxSeen = 0;

  constructor(maxLength: number) {
    this.counts = new Uint32Array(maxLength + 1);
  }

  add(length: number): void {
    this.counts[Math.min(length, this.counts.length - 1)]!++;
    this.total++;
    this.sum += length;
    this.maxSeen = Math.max(this.maxSeen, length);
  }

  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil((p / 100) * this.total);
    let seen = 0;
    for (let len = 0; len < this.counts.length; len++) {
      seen += this.counts[len]!;
      if (seen >= rank) return len;
    }
    return this.maxSeen;
  }

  summary(): PrepareReport['tokenLength'] {
    return {
      records: this.total,
      mean: this.total === 0 ? 0 : Math.round((this.sum / this.total) * 10) / 10,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p95: this.percentile(95),
      p99: this.percentile(99),
      max: this.maxSeen,
    };
  }
}

export function qualityBin(q: number): number {
  return Math.min(9, Math.floor(q * 10));
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function counts(obj: Record<string, number | undefined>): string {
  const entries = Object.entries(obj).filter(([, v]) => (v ?? 0) > 0);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${v}`).join(', ');
}

function nearDetection(d: PrepareReport['duplicates']): string {
  const n = d.nearDetection;
  if (!n) return ' (near-duplicate detection off)';
  return ` (Jaccard ≥ ${n.threshold}: ${n.bands}×${n.rows} LSH bands, ${d.nearCandidates} candidate pairs checked, ${d.nearAccepted} accepted)`;
}

function sum(obj: Record<string, number | undefined>): number {
  return Object.values(obj).reduce<number>((a, b) => a + (b ?? 0), 0);
}

/** `totals` from the detailed counters, once they are final. */
export function reportTotals(r: Pick<PrepareReport, 'errors' | 'filtered' | 'duplicates' | 'splits'>): PrepareReport['totals'] {
  return {
    rejected: sum(r.errors),
    filtered: sum(r.filtered),
    duplicates: r.duplicates.exact + r.duplicates.near,
    kept: r.splits.train.records + r.splits.valid.records + r.splits.test.records,
  };
}

export function formatReport(r: PrepareReport): string {
  const t = r.totals;
  const lines = [
    `Totals: ${t.kept} records kept, ${t.rejected} rejected (bad lines), ${t.filtered} filtered out, ${t.duplicates} duplicates removed`,
    `Read ${r.files} file(s), ${r.lines} lines (${r.blankLines} blank), ${(r.bytes / 1e6).toFixed(1)} MB in ${r.elapsedSeconds.toFixed(1)} s ` +
      `(${Math.round(r.recordsPerSecond)} records/s, ${r.megabytesPerSecond.toFixed(1)} MB/s)`,
    `Records by format: ${counts(r.recordsByFormat)}`,
    `Rejected (errors): ${counts(r.errors)}`,
    `Filtered out: ${counts(r.filtered)}`,
  ];
  for (const e of r.rejectionExamples.slice(0, 5)) lines.push(`  ${e}`);
  if (r.rejectionExamples.length > 5) lines.push('  ... (all rejections: rejections.jsonl)');
  const q = r.quality;
  lines.push(
    `Quality: ${q.scored} scored, ${q.unscored} unscored; histogram [0,.1)…[.9,1]: ${q.histogram.join(' ')}` +
      (q.metricsRead > 0
        ? `; metrics read ${q.metricsRead} (${q.metricsWithoutScore} without quality_score), joined ${q.metricsJoined}, unmatched ${q.metricsUnmatched}`
        : ''),
    `Duplicates removed: ${r.duplicates.exact} exact, ${r.duplicates.near} near` + nearDetection(r.duplicates),
    `Length (max ${r.length.maxSeqLength}): ${r.length.truncated} truncated, ${r.length.truncatedAway} truncated away, ${r.length.dropped} dropped; tokens/record ` +
      `mean ${r.tokenLength.mean}, p50 ${r.tokenLength.p50}, p90 ${r.tokenLength.p90}, p95 ${r.tokenLength.p95}, p99 ${r.tokenLength.p99}, max ${r.tokenLength.max}`,
    `Messages per conversation: ${counts(r.turnsPerConversation)}`,
    `Splits: ${(['train', 'valid', 'test'] as const)
      .map((s) => `${s} ${r.splits[s].records} records / ${r.splits[s].tokens} tokens (${r.splits[s].trainedTokens} trained)`)
      .join('; ')}`,
    `Batching (train, ${r.batching.batchSize} rows × ${r.batching.maxSeqLength}): bucketed padding ${pct(r.batching.bucketPaddingFraction)}, ` +
      `packed fill ${pct(r.batching.packFillRatio)}`,
  );
  if (Object.keys(r.emitted).length > 0) {
    lines.push(`Emitted: ${counts(r.emitted)}${Object.keys(r.notRepresentable).length ? `; not representable: ${counts(r.notRepresentable)}` : ''}`);
    for (const [format, n] of Object.entries(r.emittedWithExtraWeight)) {
      if (n > 0) lines.push(`  ${format}: ${n} record(s) keep a weight-0 turn as an extra "weight": 0 key, which ${format} does not define; trainers that ignore it will train that turn`);
    }
  }
  return lines.join('\n');
}
