/**
 * Charts for reports: Vega-Lite specs compiled and rendered to SVG in Node (vega's headless
 * view, no browser and no canvas), so a report is one self-contained file.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface SeriesPoint {
  readonly x: number;
  readonly y: number;
  readonly series: string;
}

export interface LineChart {
  readonly title: string;
  readonly xTitle: string;
  readonly yTitle: string;
  readonly points: readonly SeriesPoint[];
  readonly logY?: boolean;
}

export interface BarChart {
  readonly title: string;
  readonly yTitle: string;
  /** One bar per (group, series). */
  readonly bars: readonly { group: string; series: string; value: number }[];
}

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** A line per series with a point mark per value, so each value is one mark a reader can hover. */
export function lineChartSvg(chart: LineChart): Promise<string> {
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    width: 520,
    height: 220,
    data: { values: chart.points.map((p) => ({ ...p })) },
    mark: { type: 'line', point: true, tooltip: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: chart.xTitle },
      y: { field: 'y', type: 'quantitative', title: chart.yTitle, scale: chart.logY ? { type: 'log' } : { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}

export function barChartSvg(chart: BarChart): Promise<string> {
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    width: { step: 24 },
    height: 200,
    data: { values: chart.bars.map((b) => ({ ...b })) },
    mark: { type: 'bar', tooltip: true },
    encoding: {
      x: { field: 'group', type: 'nominal', title: null },
      xOffset: { field: 'series', type: 'nominal' },
      y: { field: 'value', type: 'quantitative', title: chart.yTitle },
      color: { field: 'series', type: 'nominal', title: null },
    },
  });
}
