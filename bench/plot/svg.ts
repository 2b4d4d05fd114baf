// Plots as hand-written SVG (no plotting dependency): line charts (throughput over time, the
// latency percentile spectrum on HdrHistogram's log-of-1/(1-p) axis) and grouped bar charts
// (comparison across runs). Output is self-contained SVG 1.1 with every text XML-escaped, so any
// viewer or converter (rsvg-convert, a browser) renders it.

const WIDTH = 900;
const HEIGHT = 520;
const MARGIN = { left: 80, right: 200, top: 50, bottom: 60 };
const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

export function escapeXml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function num(v: number): string {
  return Number.isFinite(v) ? String(Math.round(v * 100) / 100) : '0';
}

export function colorAt(i: number): string {
  return PALETTE[i % PALETTE.length]!;
}

/** "Nice" tick values covering [min, max] (1, 2, 5 × 10^k steps). */
/**
 * Round tick values in [min, max]. With `cover`, the last tick is at or above `max`, so an axis
 * that ends at the last tick holds every value (a y axis); without, ticks stay inside (an x axis).
 */
export function niceTicks(min: number, max: number, count = 6, cover = false): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Math.round(v / step) * step);
  }
  const last = ticks[ticks.length - 1];
  if (cover && (last === undefined || last < max)) {
    ticks.push(Math.round(((last ?? Math.floor(min / step) * step) + step) / step) * step);
  }
  return ticks;
}

export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${num(v / 1e6)}M`;
  if (a >= 1e4) return `${num(v / 1e3)}k`;
  return num(v);
}

export interface LineSeries {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  /** x-axis: linear, or percentiles on the log of 1/(1 - p/100) (p in [0, 100)). */
  readonly xScale?: 'linear' | 'percentile';
  readonly yMin?: number;
}

function frame(title: string, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function legend(names: readonly string[]): string[] {
  const x = WIDTH - MARGIN.right + 16;
  return names.flatMap((name, i) => {
    const y = MARGIN.top + 10 + i * 20;
    return [
      `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${colorAt(i)}"/>`,
      `<text x="${x + 20}" y="${y}">${escapeXml(name)}</text>`,
    ];
  });
}

/** Percentile p (0..100) to the log axis position log10(1/(1-p/100)), capped at 99.9999. */
function percentileX(p: number): number {
  const q = Math.min(p, 99.9999) / 100;
  return Math.log10(1 / (1 - q));
}

export function lineChartSvg(chart: LineChart): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const percentile = chart.xScale === 'percentile';
  const tx = (x: number) => (percentile ? percentileX(x) : x);
  const all = chart.series.flatMap((s) => s.points);
  const xs = all.map((p) => tx(p[0]));
  const ys = all.map((p) => p[1]);
  const xMin = percentile ? 0 : Math.min(0, ...xs);
  const xMax = percentile ? Math.max(2, Math.ceil(Math.max(0, ...xs))) : Math.max(1, ...xs);
  const yMin = chart.yMin ?? 0;
  const yTicks = niceTicks(yMin, Math.max(yMin + 1, ...ys) * 1.05, 6, true);
  const yMax = yTicks[yTicks.length - 1] ?? 1;
  const sx = (x: number) => MARGIN.left + ((x - xMin) / (xMax - xMin || 1)) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - ((y - yMin) / (yMax - yMin || 1)) * plotH;
  const body: string[] = [];
  body.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444444"/>`,
  );
  for (const t of yTicks) {
    body.push(
      `<line x1="${MARGIN.left}" y1="${num(sy(t))}" x2="${MARGIN.left + plotW}" y2="${num(sy(t))}" stroke="#e0e0e0"/>`,
      `<text x="${MARGIN.left - 6}" y="${num(sy(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`,
    );
  }
  const xTicks: [number, string][] = percentile
    ? Array.from({ length: xMax + 1 }, (_, k) => [
        k,
        k === 0 ? '0%' : `${(100 * (1 - 10 ** -k)).toFixed(Math.max(0, k - 2))}%`,
      ])
    : niceTicks(xMin, xMax).map((t) => [t, formatTick(t)]);
  for (const [t, label] of xTicks) {
    body.push(
      `<line x1="${num(sx(t))}" y1="${MARGIN.top}" x2="${num(sx(t))}" y2="${MARGIN.top + plotH}" stroke="#f0f0f0"/>`,
      `<text x="${num(sx(t))}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${escapeXml(label)}</text>`,
    );
  }
  body.push(
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`,
    `<text x="18" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${MARGIN.top + plotH / 2})">${escapeXml(chart.yLabel)}</text>`,
  );
  chart.series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points
      .map((p, j) => `${j === 0 ? 'M' : 'L'}${num(sx(tx(p[0])))},${num(sy(p[1]))}`)
      .join(' ');
    body.push(
      `<path d="${d}" fill="none" stroke="${colorAt(i)}" stroke-width="2" stroke-linejoin="round"/>`,
    );
  });
  body.push(...legend(chart.series.map((s) => s.name)));
  return frame(chart.title, body);
}

export interface BarChart {
  readonly title: string;
  readonly yLabel: string;
  /** One group per x position (e.g. a workload). */
  readonly groups: readonly string[];
  /** One bar per group for each series (e.g. a target); NaN: no bar. */
  readonly series: readonly { readonly name: string; readonly values: readonly number[] }[];
}

export function barChartSvg(chart: BarChart): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = chart.series.flatMap((s) => s.values.filter(Number.isFinite));
  const yTicks = niceTicks(0, Math.max(1, ...values) * 1.05, 6, true);
  const yMax = yTicks[yTicks.length - 1] ?? 1;
  const sy = (y: number) => MARGIN.top + plotH - (y / yMax) * plotH;
  const groupW = plotW / Math.max(1, chart.groups.length);
  const barW = (groupW * 0.8) / Math.max(1, chart.series.length);
  const body: string[] = [
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444444"/>`,
  ];
  for (const t of yTicks) {
    body.push(
      `<line x1="${MARGIN.left}" y1="${num(sy(t))}" x2="${MARGIN.left + plotW}" y2="${num(sy(t))}" stroke="#e0e0e0"/>`,
      `<text x="${MARGIN.left - 6}" y="${num(sy(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`,
    );
  }
  chart.groups.forEach((g, gi) => {
    const gx = MARGIN.left + gi * groupW;
    body.push(
      `<text x="${num(gx + groupW / 2)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${escapeXml(g)}</text>`,
    );
    chart.series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === undefined || !Number.isFinite(v)) return;
      const x = gx + groupW * 0.1 + si * barW;
      body.push(
        `<rect x="${num(x)}" y="${num(sy(v))}" width="${num(barW * 0.9)}" height="${num(sy(0) - sy(v))}" fill="${colorAt(si)}"><title>${escapeXml(`${s.name} ${g}: ${formatTick(v)}`)}</title></rect>`,
      );
    });
  });
  body.push(
    `<text x="18" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${MARGIN.top + plotH / 2})">${escapeXml(chart.yLabel)}</text>`,
  );
  body.push(...legend(chart.series.map((s) => s.name)));
  return frame(chart.title, body);
}
