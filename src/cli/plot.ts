/** The accuracy-vs-sparsity chart (SVG text), shared by compare.js and the browser demo. */
import { FUSION_METHODS } from '../prune/methods.js';

export interface CompareRow {
  file: string;
  model: string;
  method: string;
  group: number;
  sparsity: number;
  parameters: number;
  flops: number;
  /** Top-1 accuracy in percent; null when not measured (a data-free run). */
  accuracy: number | null;
  /** Top-5 accuracy in percent, where measured. */
  top5?: number | null;
  latencyMs: number | null;
  /** Who measured latencyMs when not this table's backend (e.g. "run.js, webgpu"); shown beside it. */
  latencyBy?: string;
}

/** Plot label of each results key (the fusion methods' table, and the unpruned model). */
export const METHOD_LABEL: Record<string, string> = { ...Object.fromEntries(FUSION_METHODS.map((m) => [m.key, m.label])), original: 'unpruned' };
/** Line style per method, from the table: default dashed, Intra-Fusion solid, folding dotted. */
const DASH: Record<string, string> = Object.fromEntries(FUSION_METHODS.map((m) => [m.key, m.dash ? ` stroke-dasharray="${m.dash}"` : '']));

export interface PlotOptions {
  /** 'accuracy' (top-1, default) or 'top5'. */
  metric?: 'accuracy' | 'top5';
  /** Unpruned models, drawn as thin horizontal reference lines. */
  originals?: CompareRow[];
}

/** An accuracy-vs-sparsity line chart: one colour per group, one line style per method. Rows without the metric are left out. */
export function accuracyPlot(allRows: CompareRow[], o: PlotOptions = {}): string {
  const metric = o.metric ?? 'accuracy';
  const value = (r: CompareRow) => (metric === 'top5' ? r.top5 ?? null : r.accuracy);
  const rows = allRows.filter((r) => value(r) !== null);
  const originals = (o.originals ?? []).filter((r) => value(r) !== null);
  const W = 680, H = 420, L = 60, R = 210, T = 30, B = 50;
  const xs = rows.map((r) => r.sparsity);
  const ys = [...rows, ...originals].map((r) => value(r)!);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 0.1);
  let y0 = Math.max(0, Math.floor(Math.min(...ys) / 10) * 10), y1 = Math.min(100, Math.ceil(Math.max(...ys) / 10) * 10 || 100);
  // At least one 10-point band (all values equal, e.g. every model at 20%, would leave none: no grid step).
  if (y1 - y0 < 10) [y0, y1] = y1 >= 100 ? [90, 100] : [y0, y0 + 10];
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - y0) / Math.max(1e-9, y1 - y0)) * (H - T - B);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
  const what = metric === 'top5' ? 'Top-5 accuracy' : 'Accuracy';
  const methods = [...new Set(rows.map((r) => METHOD_LABEL[r.method] ?? r.method))].join(' vs ');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${(L + W - R) / 2}" y="18" text-anchor="middle" font-size="14">${what} vs sparsity: ${methods}</text>`,
  ];
  for (let y = y0; y <= y1 + 1e-9; y += (y1 - y0) / 5) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/><text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(0)}</text>`);
  }
  for (const x of [...new Set(xs)].sort()) parts.push(`<text x="${px(x)}" y="${H - B + 18}" text-anchor="middle">${x}</text>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">sparsity (fraction of the group's channels removed)</text>`);
  parts.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${metric === 'top5' ? 'top-5' : 'test'} accuracy (%)</text>`);
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`);
  const series = new Map<string, CompareRow[]>();
  for (const r of rows) {
    const key = `${r.model} ${r.group === -1 ? 'all' : `g${r.group}`}|${r.method}`;
    series.set(key, [...(series.get(key) ?? []), r]);
  }
  const groups = [...new Set([...series.keys()].map((k) => k.split('|')[0]))].sort();
  let legend = 0;
  for (const r of originals) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(value(r)!)}" y2="${py(value(r)!)}" stroke="#555" stroke-width="1"/>`);
    const ly = T + 10 + legend++ * 18;
    parts.push(`<line x1="${W - R + 10}" x2="${W - R + 34}" y1="${ly}" y2="${ly}" stroke="#555"/><text x="${W - R + 40}" y="${ly + 4}">${r.model} unpruned</text>`);
  }
  for (const [key, pts] of [...series].sort()) {
    const [g, method] = key.split('|');
    const colour = colours[groups.indexOf(g) % colours.length];
    const dash = DASH[method] ?? ' stroke-dasharray="1 2"';
    const sorted = pts.sort((a, b) => a.sparsity - b.sparsity);
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${sorted.map((p) => `${px(p.sparsity)},${py(value(p)!)}`).join(' ')}"/>`);
    for (const p of sorted) parts.push(`<circle cx="${px(p.sparsity)}" cy="${py(value(p)!)}" r="3" fill="${colour}"/>`);
    const ly = T + 10 + legend++ * 18;
    parts.push(`<line x1="${W - R + 10}" x2="${W - R + 34}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"${dash}/><text x="${W - R + 40}" y="${ly + 4}">${g} ${METHOD_LABEL[method] ?? method}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}
