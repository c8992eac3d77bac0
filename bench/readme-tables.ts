/**
 * The README's bench tables, generated from bench/results/*.json so no figure is copied by hand:
 * `npm run docs:bench` rewrites the text between each pair of markers, and test/bench-docs.test.ts fails
 * when the README differs from what the JSON files give. Pure functions of the parsed JSON (no GPU).
 */
import type { KernelRow } from './bench.js';
import type { MainJobResult, MainJobRun } from './main-job.js';
import type { ModelRow } from './models.js';
import type { PruneResult } from './prune.js';
import { median, readResult, TARGETS, type Measured } from './results.js';

export interface KernelsResult { measured: Measured; trials: number; targetRatio: number; tfjs: string | null; rows: KernelRow[] }
export interface ModelsResult { measured: Measured; rows: ModelRow[]; torch: string | null; torchThreads: number | null; steps: number }
export type PruneBenchResult = PruneResult & { measured: Measured; checkpoint: string | null };

export interface BenchResults {
  kernels: KernelsResult | null;
  models: ModelsResult | null;
  prune: PruneBenchResult | null;
  mainJob: MainJobResult | null;
}

export function readBenchResults(dir?: string): BenchResults {
  return {
    kernels: readResult<KernelsResult>('kernels', dir),
    models: readResult<ModelsResult>('models', dir),
    prune: readResult<PruneBenchResult>('prune', dir),
    mainJob: readResult<MainJobResult>('main-job', dir),
  };
}

const fixed = (v: number | null | undefined, d: number) => (v === null || v === undefined ? '-' : v.toFixed(d));

export function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** One line: when, where, on which adapter and under what load a result was measured. */
export function measuredLine(m: Measured): string {
  return `Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.host} (${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB), ` +
    `Node ${m.node}${m.commit ? `, commit ${m.commit}` : ''}; adapter ${m.adapter}; load average ${m.loadStart} at the start, ${m.loadEnd} at the end.`;
}

const notMeasured = (command: string) => `Not measured yet: run \`${command}\`, then \`npm run docs:bench\`.`;
const status = (pass: boolean | null) => (pass === null ? 'not measured' : pass ? '**met**' : '**not met**');

/** Where each target of issue 18 stands. */
export function targetsTable(r: BenchResults): string {
  const full = r.mainJob?.runs.full;
  const kernelRows = r.kernels?.rows.filter((k) => k.ratio !== null) ?? [];
  const lowest = kernelRows.length ? kernelRows.reduce((a, b) => (b.ratio! < a.ratio! ? b : a)) : null;
  const below = kernelRows.filter((k) => k.ratio! < TARGETS.kernelRatio);
  const ifRow = r.prune?.wholeNetwork?.rows.find((w) => w.method === 'IF-EMD');
  const when = (m: Measured | undefined) => (m ? ` (${m.date.slice(0, 10)}, load ${m.loadStart} -> ${m.loadEnd})` : '');
  const rows = [
    [`\`node dist/run.js --sparsities 0.5\`, full test set: <= ${TARGETS.mainJobSeconds / 60} min`,
      full ? `${duration(full.wallSeconds)}${when(full.measured)}` : 'not measured', status(full ? full.wallSeconds <= TARGETS.mainJobSeconds : null)],
    [`every kernel row >= ${TARGETS.kernelRatio}x tfjs-backend-webgpu`,
      lowest ? `lowest ${lowest.ratio!.toFixed(2)}x (${lowest.op} ${lowest.shape}); ${kernelRows.length - below.length} of ${kernelRows.length} rows >= ${TARGETS.kernelRatio}x${when(r.kernels?.measured)}` : 'not measured',
      status(lowest ? below.length === 0 : null)],
    [`whole-network Intra-Fusion of VGG11-BN at 0.5: >= ${TARGETS.pruneSpeedup}x faster than the authors' code`,
      ifRow?.speedup != null ? `ours ${ifRow.oursMedian.toFixed(2)} s, reference ${ifRow.referenceMedian!.toFixed(2)} s (medians): ${ifRow.speedup.toFixed(2)}x${when(r.prune?.measured)}` : 'not measured',
      status(ifRow?.speedup != null ? ifRow.speedup >= TARGETS.pruneSpeedup : null)],
  ];
  return ['| target | measured | status |', '|---|---|---|', ...rows.map((c) => `| ${c.join(' | ')} |`)].join('\n');
}

export function mainJobTable(r: MainJobResult | null): string {
  const runs = r ? Object.values(r.runs) : [];
  if (!runs.length) return notMeasured('npm run bench -- --only=main-job');
  const maxLoad = (x: MainJobRun) => Math.max(...x.loadSamples, x.measured.loadEnd);
  const lines = [
    '| run | command | wall time | target | load average (start, max, end) | measured |',
    '|---|---|---:|---|---|---|',
    ...runs.map((x) => `| ${x.variant} (${x.evalSamples ?? '?'} images) | \`${x.command}\` | ${duration(x.wallSeconds)} | ${x.targetSeconds === null ? '-' : `<= ${duration(x.targetSeconds)}: ${x.pass ? 'pass' : 'FAIL'}`} | ${x.measured.loadStart}, ${maxLoad(x)}, ${x.measured.loadEnd} | ${x.measured.date.slice(0, 16).replace('T', ' ')} |`),
    '',
    `| phase (from when run.js prints each line) | ${runs.map((x) => `${x.variant} s`).join(' | ')} |`,
    `|---|${runs.map(() => '---:').join('|')}|`,
  ];
  const names = [...new Set(runs.flatMap((x) => x.phases.map((p) => p.phase)))];
  for (const n of names) lines.push(`| ${n} | ${runs.map((x) => fixed(x.phases.find((p) => p.phase === n)?.seconds, 1)).join(' | ')} |`);
  lines.push('', ...runs.map((x) => `${x.variant}: ${measuredLine(x.measured)}`));
  return lines.join('\n');
}

export function kernelsTable(r: KernelsResult | null): string {
  if (!r) return notMeasured('npm run bench -- --only=kernels');
  return [
    '| op | shape | ours ms | ours GFLOP/s | tfjs-webgpu ms | tfjs GFLOP/s | ratio |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...r.rows.map((k) => `| ${k.op} | ${k.shape} | ${fixed(k.oursMs, 1)} | ${fixed(k.oursGflops, 2)} | ${fixed(k.tfjsMs, 1)} | ${fixed(k.tfjsGflops, 2)} | ${k.ratio === null ? '-' : `${k.ratio.toFixed(2)}x${k.ratio < r.targetRatio ? ' (below target)' : ''}`} |`),
    '',
    `${measuredLine(r.measured)} Medians of ${r.trials} alternating trials; ${r.tfjs ?? 'tfjs not run'}.`,
  ].join('\n');
}

export function modelsTable(r: ModelsResult | null): string {
  if (!r) return notMeasured('npm run bench -- --only=models');
  return [
    '| model | train img/s (batch) | eval img/s (batch) | latency ms (batch 1) | PyTorch CPU train img/s | PyTorch CPU eval img/s | onnxruntime CPU eval img/s |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...r.rows.map((m) => `| ${m.model} | ${fixed(m.trainImagesPerS, 1)} (${m.trainBatch}) | ${fixed(m.evalImagesPerS, 1)} (${m.evalBatch}) | ${fixed(m.latencyMs, 1)} | ${fixed(m.torchTrainImagesPerS, 1)} | ${fixed(m.torchEvalImagesPerS, 1)} | ${fixed(m.ortEvalImagesPerS ?? null, 1)} |`),
    '',
    `${measuredLine(r.measured)} ${r.steps} timed steps each; PyTorch ${r.torch ?? 'not present'}${r.torchThreads ? ` (${r.torchThreads} threads)` : ''}.`,
  ].join('\n');
}

const cpuPair = (x: { oursCpuSeconds?: number[]; referenceCpuSeconds?: number[] | null }) =>
  x.oursCpuSeconds?.length ? `${median(x.oursCpuSeconds).toFixed(2)} / ${x.referenceCpuSeconds?.length ? median(x.referenceCpuSeconds).toFixed(2) : '-'}` : '-';

export function pruneTables(r: PruneBenchResult | null): string {
  if (!r) return notMeasured('npm run bench -- --only=prune --reference-dir=DIR');
  const w = r.wholeNetwork;
  const lines = [
    'Whole network (every group in turn), L1, sparsity 0.5:',
    '',
    '| method | ours, first run s | ours s (median) | ours runs s | reference s (median) | reference runs s | ours faster by | CPU s, ours / reference (medians) |',
    '|---|---:|---:|---|---:|---|---:|---|',
    ...w.rows.map((x) => `| ${x.method} | ${x.oursFirstSeconds.toFixed(2)} | ${x.oursMedian.toFixed(2)} | ${x.oursSeconds.map((v) => v.toFixed(2)).join(', ')} | ${fixed(x.referenceMedian, 2)} | ${x.referenceSeconds?.map((v) => v.toFixed(2)).join(', ') ?? '-'} | ${x.speedup === null ? '-' : `${x.speedup.toFixed(2)}x`} | ${cpuPair(x)} |`),
    '',
    w.reference
      ? `Reference: the authors' code (bench/reference_prune.py) with PyTorch ${w.reference.torch} (${w.reference.threads} threads), POT ${w.reference.pot}; conv widths after Intra-Fusion ${JSON.stringify(w.oursWidths) === JSON.stringify(w.referenceWidths) ? 'equal ours' : `differ: ours ${w.oursWidths.join(',')}, theirs ${w.referenceWidths?.join(',')}`}.`
      : `Reference not run: ${w.referenceMissing}.`,
  ];
  if (r.timings.length) {
    lines.push('', 'Each group alone (a whole `prune()` call: fold, group, importance, transport, apply):', '',
      '| group | channels | default s | IF-EMD s | IF-Sinkhorn s |', '|---:|---:|---:|---:|---:|',
      ...r.timings.map((t) => `| ${t.group} | ${t.channels} | ${t.defaultS.toFixed(2)} | ${t.emdS.toFixed(2)} | ${t.sinkhornS.toFixed(2)} |`));
  }
  if (r.batched) {
    lines.push('', `All ${r.batched.groups} groups' transport problems from the same folded weights: Sinkhorn in one GPU batch ${r.batched.sinkhornBatchS.toFixed(2)} s, exact EMD one after another ${r.batched.emdSequentialS.toFixed(2)} s.`);
  }
  if (!r.timings.length) lines.push('', 'Per-group times and the Sinkhorn batch were not measured in this run (`--no-groups`).');
  if (r.accuracy.length) {
    const cells = [...new Set(r.accuracy.map((a) => `${a.group}|${a.sparsity}`))];
    const acc = (cell: string, method: string) => fixed(r.accuracy.find((a) => `${a.group}|${a.sparsity}` === cell && a.method === method)?.accuracy, 1);
    lines.push('', 'Accuracy without fine-tuning (first test images, see the measured line):', '',
      '| group | sparsity | default % | IF-EMD % | IF-Sinkhorn % |', '|---:|---:|---:|---:|---:|',
      ...cells.map((c) => `| ${c.split('|').join(' | ')} | ${acc(c, 'default')} | ${acc(c, 'IF-EMD')} | ${acc(c, 'IF-Sinkhorn')} |`));
  }
  lines.push('', measuredLine(r.measured));
  return lines.join('\n');
}

/** Each generated block by marker name. */
export function benchBlocks(r: BenchResults): Record<string, string> {
  return { targets: targetsTable(r), 'main-job': mainJobTable(r.mainJob), kernels: kernelsTable(r.kernels), models: modelsTable(r.models), prune: pruneTables(r.prune) };
}

export const blockStart = (name: string) => `<!-- bench:${name}: generated by \`npm run docs:bench\` from bench/results/*.json; do not edit -->`;
export const blockEnd = (name: string) => `<!-- /bench:${name} -->`;

/** `readme` with the text between every pair of bench markers replaced by its generated block. */
export function withBenchTables(readme: string, r: BenchResults): string {
  let out = readme;
  for (const [name, text] of Object.entries(benchBlocks(r))) {
    const start = out.indexOf(blockStart(name));
    const end = out.indexOf(blockEnd(name));
    if (start < 0 || end < start) throw new Error(`README has no bench:${name} markers (${blockStart(name)} ... ${blockEnd(name)}).`);
    out = `${out.slice(0, start + blockStart(name).length)}\n${text}\n${out.slice(end)}`;
  }
  return out;
}
