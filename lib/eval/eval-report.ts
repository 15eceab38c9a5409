/**
 * The evaluation report: report.json (every number, with the per-item outcomes they come from),
 * report.md, and one self-contained report.html with inline SVG charts (training curves of the
 * adapters' runs, per-category metrics), win rates, the export check and side-by-side answers.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic-file.js';
import { barChartSvg, lineChartSvg } from './report/charts.js';
import { escapeHtml, htmlDocument, htmlTable, type HtmlSection } from './report/html.js';
import { buildRunReport } from './report/run-report.js';
import type { EvalReport } from './evaluate.js';
import type { GenerationRow, LikelihoodRow } from './eval-results.js';

export interface TrainingCurve {
  arm: string;
  run: string;
  steps: { step: number; loss: number }[];
  evals: { step: number; val_loss: number }[];
}

/** Training and validation loss of each adapter that came from a run folder, from its metrics.jsonl. */
export async function trainingCurves(arms: readonly { name: string; run: string | null }[]): Promise<TrainingCurve[]> {
  const curves: TrainingCurve[] = [];
  for (const a of arms) {
    if (a.run === null) continue;
    const r = await buildRunReport(a.run);
    curves.push({
      arm: a.name,
      run: a.run,
      steps: r.steps.map((s) => ({ step: s.step, loss: s.loss })),
      evals: r.evals.flatMap((e) => (e.val_loss === null ? [] : [{ step: e.step, val_loss: e.val_loss }])),
    });
  }
  return curves;
}

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '–' : Number(v.toPrecision(digits)).toString());
const pct = (v: number | null | undefined) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);

/** The per-category metrics a chart shows: one bar per arm and category with a value. */
export const METRIC_CHARTS = [
  { title: 'Exact match', key: 'exact_match', from: 'generation' },
  { title: 'Token F1', key: 'token_f1', from: 'generation' },
  { title: 'Token accuracy (references)', key: 'token_accuracy', from: 'likelihood' },
  { title: 'Refusal rate', key: 'refusal_rate', from: 'generation' },
] as const;

function metricBars(r: EvalReport, chart: (typeof METRIC_CHARTS)[number]): { group: string; series: string; value: number }[] {
  const rows: (GenerationRow | LikelihoodRow)[] = chart.from === 'generation' ? r.generation : r.likelihood;
  return rows.flatMap((row) => {
    const value = (row as unknown as Record<string, number | null>)[chart.key];
    return value === null || value === undefined ? [] : [{ group: row.category, series: row.arm, value }];
  });
}

function likelihoodTable(r: EvalReport): { header: string[]; rows: (string | number)[][] } {
  return {
    header: ['arm', 'category', 'loss', 'perplexity', 'token accuracy', 'tokens'],
    rows: r.likelihood.map((l) => [l.arm, l.category, fmt(l.loss), fmt(l.perplexity), pct(l.token_accuracy), l.tokens]),
  };
}

function generationTable(r: EvalReport): { header: string[]; rows: (string | number)[][] } {
  return {
    header: ['arm', 'category', 'items', 'exact match', 'token F1', 'answer tokens', 'refusals', 'tokens/s'],
    rows: r.generation.map((g) => [g.arm, g.category, g.items, pct(g.exact_match), fmt(g.token_f1, 3), fmt(g.mean_answer_tokens, 3), pct(g.refusal_rate), fmt(g.tokens_per_sec, 3)]),
  };
}

function judgeTable(r: EvalReport): { header: string[]; rows: (string | number)[][] } | null {
  if (!r.judge) return null;
  return {
    header: ['arm', 'against', 'wins', 'losses', 'ties', 'invalid', 'win rate', '95% Wilson interval'],
    rows: r.judge.win_rates.map((w) => [w.arm, w.against, w.wins, w.losses, w.ties, w.invalid, pct(w.win_rate), `${pct(w.low)} – ${pct(w.high)}`]),
  };
}

function exportTable(r: EvalReport): { header: string[]; rows: (string | number)[][] } | null {
  if (r.export_checks.length === 0) return null;
  return {
    header: ['GGUF', 'against', 'positions', 'mean KL (nats)', 'max KL', 'top-1 agreement', 'perplexity llama.cpp', 'perplexity ours'],
    rows: r.export_checks.map((c) => [c.gguf, c.against, c.positions, c.mean_kl.toExponential(3), c.max_kl.toExponential(3), pct(c.top1_agreement), fmt(c.perplexity_llama_cpp, 6), fmt(c.perplexity_ours, 6)]),
  };
}

function answersTable(r: EvalReport): { header: string[]; rows: string[][] } {
  const arms = r.arms.map((a) => a.name);
  return { header: ['id', 'category', 'prompt', 'reference', ...arms], rows: r.items.map((i) => [i.id, i.category, i.prompt, i.reference ?? '–', ...arms.map((a) => i.outputs[a]?.text ?? '')]) };
}

// Markdown renders inline HTML: answers are escaped so that a model's output stays text.
const mdCell = (v: string | number) => escapeHtml(String(v)).replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
function mdTable(t: { header: string[]; rows: (string | number)[][] }): string[] {
  return [`| ${t.header.map(mdCell).join(' | ')} |`, `|${t.header.map(() => '---').join('|')}|`, ...t.rows.map((row) => `| ${row.map(mdCell).join(' | ')} |`), ''];
}

function summaryRows(r: EvalReport): [string, string][] {
  const s = r.settings;
  return [
    ['model', r.model],
    ['data', `${r.data.source} (${r.data.items} items${r.data.rejected.length ? `, ${r.data.rejected.length} lines rejected` : ''})`],
    ['arms', r.arms.map((a) => (a.adapter ? `${a.name} (${a.adapter})` : `${a.name} (LoRA off)`)).join(', ')],
    ['sampling', `seed ${s.seed}, temperature ${s.temperature}, top-p ${s.top_p}, top-k ${s.top_k}, at most ${s.max_tokens} tokens, ${s.batch_size} prompts a batch`],
    ['base quantization', typeof s.base_quantization === 'string' ? s.base_quantization : `${s.base_quantization.bits}-bit, group ${s.base_quantization.groupSize}`],
  ];
}

export function evalReportMarkdown(r: EvalReport): string {
  const lines = ['# Evaluation', '', ...mdTable({ header: ['', ''], rows: summaryRows(r) })];
  if (r.data.rejected.length) lines.push('## Rejected lines', '', ...r.data.rejected.map((x) => `- ${mdCell(`${x.file}:${x.line}: ${x.reason}: ${x.message}`)}`), '');
  for (const c of r.training) lines.push(`## Training: ${c.arm}`, '', `${c.run}: ${c.steps.length} steps, loss ${fmt(c.steps[0]?.loss)} → ${fmt(c.steps.at(-1)?.loss)}${c.evals.length ? `, last validation loss ${fmt(c.evals.at(-1)!.val_loss)}` : ''}`, '');
  lines.push('## Likelihood of the references', '', ...mdTable(likelihoodTable(r)), '## Generation', '', ...mdTable(generationTable(r)));
  const judge = judgeTable(r);
  if (judge) lines.push(`## Judge: ${r.judge!.model}`, '', 'Win rate = wins / (wins + losses); ties count for neither side.', '', ...mdTable(judge));
  const exp = exportTable(r);
  if (exp) lines.push('## Export check (llama.cpp against our model)', '', ...mdTable(exp));
  lines.push('## Answers', '', ...mdTable(answersTable(r)));
  return `${lines.join('\n')}\n`;
}

async function chartsHtml(r: EvalReport): Promise<{ training: string; metrics: string }> {
  const trainPoints = r.training.flatMap((c) => [
    ...c.steps.map((s) => ({ x: s.step, y: s.loss, series: `${c.arm} train` })),
    ...c.evals.map((e) => ({ x: e.step, y: e.val_loss, series: `${c.arm} validation` })),
  ]);
  const training = trainPoints.length ? await lineChartSvg({ title: 'Training and validation loss', xTitle: 'step', yTitle: 'loss (nats/token)', points: trainPoints }) : '';
  const metricSvgs: string[] = [];
  const notes: string[] = [];
  for (const chart of METRIC_CHARTS) {
    const bars = metricBars(r, chart);
    // A chart of zeros has no scale to draw (its axis collapses to one tick): say it instead.
    if (bars.length && bars.every((b) => b.value === 0)) notes.push(`${chart.title}: 0 for every arm and category.`);
    else if (bars.length) metricSvgs.push(await barChartSvg({ title: chart.title, yTitle: chart.title.toLowerCase(), bars }));
  }
  const wrap = (svgs: string[]) => `<div class="charts">${svgs.map((s) => `<div class="chart">${s}</div>`).join('')}</div>`;
  return { training: training ? wrap([training]) : '', metrics: wrap(metricSvgs) + notes.map((n) => `<p>${escapeHtml(n)}</p>`).join('') };
}

export async function evalReportHtml(r: EvalReport): Promise<string> {
  const charts = await chartsHtml(r);
  const table = (t: { header: string[]; rows: (string | number)[][] }) => htmlTable(t.header, t.rows);
  const sections: HtmlSection[] = [{ title: 'Summary', html: htmlTable([], summaryRows(r)) }];
  if (r.data.rejected.length) sections.push({ title: 'Rejected lines', html: `<ul>${r.data.rejected.map((x) => `<li>${escapeHtml(`${x.file}:${x.line}: ${x.reason}: ${x.message}`)}</li>`).join('')}</ul>` });
  if (charts.training) sections.push({ title: 'Training', html: charts.training });
  sections.push({ title: 'Per-category metrics', html: charts.metrics });
  sections.push({ title: 'Likelihood of the references', html: table(likelihoodTable(r)) });
  sections.push({ title: 'Generation', html: table(generationTable(r)) });
  const judge = judgeTable(r);
  if (judge) sections.push({ title: `Judge: ${r.judge!.model}`, html: `<p>Win rate = wins / (wins + losses); ties count for neither side.</p>${table(judge)}` });
  const exp = exportTable(r);
  if (exp) sections.push({ title: 'Export check (llama.cpp against our model)', html: table(exp) });
  const answers = answersTable(r);
  sections.push({ title: 'Answers side by side', html: htmlTable(answers.header, answers.rows).replace(/<td>/g, '<td><pre>').replace(/<\/td>/g, '</pre></td>') });
  return htmlDocument('Evaluation', `${r.model} · ${r.arms.map((a) => a.name).join(' vs ')}`, sections);
}

/** Writes report.json, report.md and report.html into `out`; returns their paths. */
export async function writeEvalReport(r: EvalReport, out: string): Promise<string[]> {
  await mkdir(out, { recursive: true });
  const files = [join(out, 'report.json'), join(out, 'report.md'), join(out, 'report.html')];
  await writeFileAtomic(files[0]!, `${JSON.stringify(r, null, 2)}\n`);
  await writeFileAtomic(files[1]!, evalReportMarkdown(r));
  await writeFileAtomic(files[2]!, await evalReportHtml(r));
  return files;
}
