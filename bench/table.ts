/** One benchmark's result: a titled table whose rows may carry a ratio to the issue's baseline. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  /** The baseline the issue names, in the same unit, when there is one. */
  baseline?: number;
  baselineLabel?: string;
  /** Goal on the ratio value/baseline (or on the value when no baseline), for the verdict column. */
  goal?: { op: '<=' | '>='; target: number };
}

export interface BenchTable {
  title: string;
  rows: BenchRow[];
  notes?: string[];
}

export type Bench = () => Promise<BenchTable>;

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 0.01 || abs >= 1e7)) return n.toExponential(3);
  return n.toFixed(abs < 10 ? 3 : abs < 1000 ? 1 : 0);
}

export function renderTable(table: BenchTable): string {
  const header = ['case', 'value', 'unit', 'baseline', 'ratio', 'goal', 'ok'];
  const body = table.rows.map((r) => {
    const ratio = r.baseline !== undefined && r.baseline !== 0 ? r.value / r.baseline : undefined;
    const measured = ratio ?? r.value;
    const ok = r.goal ? (r.goal.op === '<=' ? measured <= r.goal.target : measured >= r.goal.target) : undefined;
    return [
      r.name,
      fmt(r.value),
      r.unit,
      r.baseline !== undefined ? `${fmt(r.baseline)}${r.baselineLabel ? ` (${r.baselineLabel})` : ''}` : '',
      ratio !== undefined ? fmt(ratio) : '',
      r.goal ? `${r.goal.op} ${r.goal.target}` : '',
      ok === undefined ? '' : ok ? 'yes' : 'NO',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const sep = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  const out = [`## ${table.title}`, '', line(header), sep, ...body.map(line)];
  if (table.notes?.length) out.push('', ...table.notes.map((n) => `- ${n}`));
  return out.join('\n');
}
