/** A self-contained HTML report: inline CSS and SVG, no script, nothing fetched. */

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export interface HtmlSection {
  readonly title: string;
  /** Already-safe HTML: tables built by htmlTable, SVG from the chart renderer. */
  readonly html: string;
}

export function htmlTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cell = (v: string | number, tag: 'td' | 'th') => `<${tag}${typeof v === 'number' ? ' class="num"' : ''}>${escapeHtml(String(v))}</${tag}>`;
  const head = header.length > 0 ? `<thead><tr>${header.map((h) => cell(h, 'th')).join('')}</tr></thead>` : '';
  return `<table>${head}<tbody>${rows.map((r) => `<tr>${r.map((v) => cell(v, 'td')).join('')}</tr>`).join('')}</tbody></table>`;
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d1d1f; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f5f5f7; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; } .chart { border: 1px solid #eee; padding: .5rem; }
pre { white-space: pre-wrap; margin: 0; font: 12px/1.4 ui-monospace, monospace; }`;

export function htmlDocument(title: string, subtitle: string, sections: readonly HtmlSection[]): string {
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style></head><body>`,
    `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(subtitle)}</p>`,
    ...sections.map((s) => `<section><h2>${escapeHtml(s.title)}</h2>${s.html}</section>`),
    '</body></html>',
    '',
  ].join('\n');
}
