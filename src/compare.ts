/**
 * `node dist/compare.js --model_dir ./pruned_models`: a table of parameters, FLOPs, accuracy and latency
 * of every pruned checkpoint in a folder (as written by run.js), and an accuracy-vs-sparsity plot of
 * default pruning vs Intra-Fusion per group, as SVG (<model_dir>/comparison.svg unless --plot is given).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { writeFileAtomic } from './nn/checkpoint-node.js';
import { loadStateDict, resizeToStateDict } from './nn/checkpoint.js';
import { complexity, inferenceSpeed } from './nn/metrics.js';
import { createModel } from './nn/models.js';
import { parseSafetensors } from './tensor/safetensors.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';

const FLAGS = {
  model_dir: { kind: 'string', help: 'Folder of pruned checkpoints (run.js writes <out>/pruned_models).', default: './pruned_models' },
  plot: { kind: 'string', help: 'Where to write the accuracy-vs-sparsity SVG. Default: <model_dir>/comparison.svg' },
  latency: { kind: 'boolean', help: 'Measure batch-1 latency of each model (--latency=false to skip).', default: true },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
} satisfies Record<string, FlagSpec>;

export interface CompareRow {
  file: string;
  model: string;
  method: string;
  group: number;
  sparsity: number;
  parameters: number;
  flops: number;
  accuracy: number;
  latencyMs: number | null;
}

const METHOD_LABEL: Record<string, string> = { default_pruning: 'default', intra_fusion: 'Intra-Fusion' };

/** An accuracy-vs-sparsity line chart: one colour per group, dashed default vs solid Intra-Fusion. */
export function accuracyPlot(rows: CompareRow[]): string {
  const W = 640, H = 420, L = 60, R = 170, T = 30, B = 50;
  const xs = rows.map((r) => r.sparsity);
  const ys = rows.map((r) => r.accuracy);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 0.1);
  const y0 = Math.max(0, Math.floor(Math.min(...ys) / 10) * 10), y1 = Math.min(100, Math.ceil(Math.max(...ys) / 10) * 10 || 100);
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - y0) / Math.max(1e-9, y1 - y0)) * (H - T - B);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${(L + W - R) / 2}" y="18" text-anchor="middle" font-size="14">Accuracy vs sparsity: default pruning vs Intra-Fusion</text>`,
  ];
  for (let y = y0; y <= y1 + 1e-9; y += (y1 - y0) / 5) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/><text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(0)}</text>`);
  }
  for (const x of [...new Set(xs)].sort()) parts.push(`<text x="${px(x)}" y="${H - B + 18}" text-anchor="middle">${x}</text>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">sparsity (fraction of the group's channels removed)</text>`);
  parts.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">test accuracy (%)</text>`);
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`);
  const series = new Map<string, CompareRow[]>();
  for (const r of rows) {
    const key = `${r.model} g${r.group}|${r.method}`;
    series.set(key, [...(series.get(key) ?? []), r]);
  }
  const groups = [...new Set(rows.map((r) => `${r.model} g${r.group}`))].sort();
  let legend = 0;
  for (const [key, pts] of [...series].sort()) {
    const [g, method] = key.split('|');
    const colour = colours[groups.indexOf(g) % colours.length];
    const dash = method === 'intra_fusion' ? '' : ' stroke-dasharray="6 4"';
    const sorted = pts.sort((a, b) => a.sparsity - b.sparsity);
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${sorted.map((p) => `${px(p.sparsity)},${py(p.accuracy)}`).join(' ')}"/>`);
    for (const p of sorted) parts.push(`<circle cx="${px(p.sparsity)}" cy="${py(p.accuracy)}" r="3" fill="${colour}"/>`);
    const ly = T + 10 + legend++ * 18;
    parts.push(`<line x1="${W - R + 10}" x2="${W - R + 34}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"${dash}/><text x="${W - R + 40}" y="${ly + 4}">${g} ${METHOD_LABEL[method] ?? method}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export async function compare(dir: string, o: { latency: boolean; gpuId: number }): Promise<CompareRow[]> {
  if (!existsSync(dir)) throw new UsageError(`--model_dir ${dir} does not exist.`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (!files.length) throw new UsageError(`No .safetensors checkpoints in ${dir}.`);
  await initRuntime(o.gpuId);
  const rows: CompareRow[] = [];
  for (const f of files) {
    const path = join(dir, f);
    const file = parseSafetensors(readFileSync(path), path);
    const meta = file.metadata;
    if (!meta.model || !meta.method) {
      process.stderr.write(`skipping ${f}: not a pruned checkpoint from run.js (no model/method metadata)\n`);
      continue;
    }
    const model = createModel(meta.model);
    resizeToStateDict(model, file);
    loadStateDict(model, file, path);
    const c = complexity(model);
    const latencyMs = o.latency ? (await inferenceSpeed(model, { batchSize: 8, reps: 3 })).latencyMs : null;
    model.dispose();
    rows.push({
      file: f, model: meta.model, method: meta.method, group: Number(meta.group_idx), sparsity: Number(meta.sparsity),
      parameters: c.parameters, flops: c.flops, accuracy: Number(meta.accuracy), latencyMs,
    });
  }
  return rows.sort((a, b) => a.model.localeCompare(b.model) || a.group - b.group || a.sparsity - b.sparsity || a.method.localeCompare(b.method));
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    console.log(usage('node dist/compare.js', 'Compare pruned checkpoints: table and accuracy-vs-sparsity plot.', FLAGS));
    return 0;
  }
  const dir = resolve(a.model_dir as string);
  const rows = await compare(dir, { latency: a.latency as boolean, gpuId: a.gpu_id as number });
  console.log('| model | group | sparsity | method | parameters | MFLOPs | accuracy % | latency ms |');
  console.log('|---|---:|---:|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.group} | ${r.sparsity} | ${METHOD_LABEL[r.method] ?? r.method} | ${r.parameters} | ${(r.flops / 1e6).toFixed(1)} | ${r.accuracy.toFixed(2)} | ${r.latencyMs === null ? '-' : r.latencyMs.toFixed(1)} |`);
  }
  const plot = resolve((a.plot as string | undefined) ?? join(dir, 'comparison.svg'));
  writeFileAtomic(plot, accuracyPlot(rows));
  console.log(`\nplot: ${plot}`);
  destroyRuntime();
  return 0;
}

if (process.argv[1] && /compare\.(js|ts|mjs)$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`error: ${e instanceof UsageError || ['GpuError', 'SafetensorsError', 'DataError'].includes(e.name) ? e.message : e.stack}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
