/**
 * A training run's report from its metrics.jsonl: loss and validation loss, learning rate,
 * throughput and memory over steps, as report.json (the numbers), report.md and report.html
 * (inline SVG charts).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../io/atomic-file.js';
import { readMetricsLog } from '../../train/metrics-log.js';
import type { DoneEvent, RunEvent, StartEvent } from '../../train/run-events.js';
import { lineChartSvg, type SeriesPoint } from './charts.js';
import { htmlDocument, htmlTable } from './html.js';

export interface RunReportStep {
  step: number;
  loss: number;
  lr: number;
  tokens_per_sec: number;
  peak_memory_bytes: number;
  active_memory_bytes: number;
}

export interface RunReport {
  run: string;
  start: Pick<StartEvent, 'total_steps' | 'config_hash' | 'library_version' | 'resumed_from'> | null;
  steps: RunReportStep[];
  evals: { step: number; val_loss: number | null; perplexity: number | null }[];
  summary: {
    steps: number;
    first_loss: number | null;
    last_loss: number | null;
    best_val_loss: number | null;
    best_step: number | null;
    mean_tokens_per_sec: number | null;
    peak_memory_bytes: number | null;
    skipped_updates: number;
  };
  done: Pick<DoneEvent, 'reason' | 'adapter_path' | 'elapsed_seconds' | 'test'> | null;
}

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The report's numbers from the run's events; a resumed run's repeated steps keep their last value. */
export function runReportFromEvents(run: string, events: readonly RunEvent[]): RunReport {
  const byStep = new Map<number, RunReportStep>();
  const evals = new Map<number, RunReport['evals'][number]>();
  let start: RunReport['start'] = null;
  let done: RunReport['done'] = null;
  let skipped = 0;
  for (const e of events) {
    if (e.type === 'start') start ??= { total_steps: e.total_steps, config_hash: e.config_hash, library_version: e.library_version, resumed_from: e.resumed_from };
    else if (e.type === 'step') byStep.set(e.step, { step: e.step, loss: e.loss, lr: e.lr, tokens_per_sec: e.tokens_per_sec, peak_memory_bytes: e.peak_memory_bytes, active_memory_bytes: e.active_memory_bytes });
    else if (e.type === 'eval') evals.set(e.step, { step: e.step, val_loss: e.val_loss, perplexity: e.perplexity });
    else if (e.type === 'nonfinite' || e.type === 'skip') skipped++;
    else if (e.type === 'done') done = { reason: e.reason, adapter_path: e.adapter_path, elapsed_seconds: e.elapsed_seconds, test: e.test ?? null };
  }
  const steps = [...byStep.values()].sort((a, b) => a.step - b.step);
  const evalList = [...evals.values()].sort((a, b) => a.step - b.step);
  const finite = evalList.filter((e) => e.val_loss !== null);
  const best = finite.reduce<(typeof finite)[number] | undefined>((b, e) => (b === undefined || e.val_loss! < b.val_loss! ? e : b), undefined);
  return {
    run,
    start,
    steps,
    evals: evalList,
    summary: {
      steps: steps.length,
      first_loss: steps[0]?.loss ?? null,
      last_loss: steps.at(-1)?.loss ?? null,
      best_val_loss: best?.val_loss ?? null,
      best_step: best?.step ?? null,
      mean_tokens_per_sec: mean(steps.map((s) => s.tokens_per_sec)),
      peak_memory_bytes: steps.length ? Math.max(...steps.map((s) => s.peak_memory_bytes)) : null,
      skipped_updates: skipped,
    },
    done,
  };
}

export async function buildRunReport(runDir: string): Promise<RunReport> {
  const dir = resolve(runDir);
  const events = await readMetricsLog(join(dir, 'metrics.jsonl'));
  if (events.length === 0) throw new Error(`${join(dir, 'metrics.jsonl')}: no events (is ${dir} a run folder?)`);
  return runReportFromEvents(dir, events);
}

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '–' : Number(v.toPrecision(digits)).toString());
const mib = (bytes: number | null) => (bytes === null ? '–' : `${(bytes / 2 ** 20).toFixed(1)} MiB`);

function summaryRows(r: RunReport): [string, string][] {
  const s = r.summary;
  return [
    ['optimizer steps', `${s.steps}${r.start ? ` of ${r.start.total_steps}` : ''}`],
    ['training loss (first → last)', `${fmt(s.first_loss)} → ${fmt(s.last_loss)}`],
    ['best validation loss', s.best_val_loss === null ? '–' : `${fmt(s.best_val_loss)} at step ${s.best_step}`],
    ['test loss / perplexity', r.done?.test ? `${fmt(r.done.test.loss)} / ${fmt(r.done.test.perplexity)}` : '–'],
    ['mean tokens/s', fmt(s.mean_tokens_per_sec, 3)],
    ['peak MLX memory', mib(s.peak_memory_bytes)],
    ['skipped updates', String(s.skipped_updates)],
    ['ended', r.done ? `${r.done.reason} after ${r.done.elapsed_seconds.toFixed(1)} s` : 'not finished'],
  ];
}

export function runReportMarkdown(r: RunReport): string {
  const lines = [`# Training run ${r.run}`, '', '| | |', '|---|---|', ...summaryRows(r).map(([k, v]) => `| ${k} | ${v} |`), ''];
  if (r.evals.length > 0) lines.push('## Validation', '', '| step | loss | perplexity |', '|---:|---:|---:|', ...r.evals.map((e) => `| ${e.step} | ${fmt(e.val_loss)} | ${fmt(e.perplexity)} |`), '');
  return `${lines.join('\n')}\n`;
}

/** The four charts of a run: loss (train and validation), learning rate, tokens/s and memory. */
export async function runReportCharts(r: RunReport): Promise<string[]> {
  const train = r.steps.map((s): SeriesPoint => ({ x: s.step, y: s.loss, series: 'train' }));
  const valid = r.evals.flatMap((e): SeriesPoint[] => (e.val_loss === null ? [] : [{ x: e.step, y: e.val_loss, series: 'validation' }]));
  return Promise.all([
    lineChartSvg({ title: 'Loss', xTitle: 'step', yTitle: 'loss (nats/token)', points: [...train, ...valid] }),
    lineChartSvg({ title: 'Learning rate', xTitle: 'step', yTitle: 'lr', points: r.steps.map((s) => ({ x: s.step, y: s.lr, series: 'lr' })) }),
    lineChartSvg({ title: 'Throughput', xTitle: 'step', yTitle: 'tokens/s', points: r.steps.map((s) => ({ x: s.step, y: s.tokens_per_sec, series: 'tokens/s' })) }),
    lineChartSvg({
      title: 'MLX memory',
      xTitle: 'step',
      yTitle: 'MiB',
      points: r.steps.flatMap((s) => [
        { x: s.step, y: s.peak_memory_bytes / 2 ** 20, series: 'peak' },
        { x: s.step, y: s.active_memory_bytes / 2 ** 20, series: 'active' },
      ]),
    }),
  ]);
}

export async function runReportHtml(r: RunReport): Promise<string> {
  const charts = await runReportCharts(r);
  return htmlDocument(`Training run ${r.run}`, r.start ? `library ${r.start.library_version}, config ${r.start.config_hash.slice(0, 12)}` : '', [
    { title: 'Summary', html: htmlTable([], summaryRows(r)) },
    { title: 'Curves', html: `<div class="charts">${charts.map((svg) => `<div class="chart">${svg}</div>`).join('')}</div>` },
  ]);
}

/** Writes report.json, report.md and report.html into `outDir` (default: the run folder). */
export async function writeRunReport(runDir: string, outDir = runDir): Promise<{ report: RunReport; files: string[] }> {
  const report = await buildRunReport(runDir);
  await mkdir(outDir, { recursive: true });
  const files = [join(outDir, 'report.json'), join(outDir, 'report.md'), join(outDir, 'report.html')];
  await writeFileAtomic(files[0]!, `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(files[1]!, runReportMarkdown(report));
  await writeFileAtomic(files[2]!, await runReportHtml(report));
  return { report, files };
}
