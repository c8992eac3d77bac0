/**
 * `node dist/compare.js --model_dir ./pruned_models`: a table of parameters, FLOPs, accuracy (top-1, and top-5
 * where the run measured it) and latency of every pruned model in a folder (as written by run.js), and
 * accuracy-vs-sparsity plots of every method in the run (default pruning, Intra-Fusion, folding) per group, as
 * SVG (<model_dir>/comparison.svg, and comparison_top5.svg when top-5 was measured).
 *
 * Models are rebuilt from their self-describing checkpoints: a built-in architecture by name, resized to the
 * pruned widths; a model that came from ONNX (run.js --model) from its source file named in the checkpoint or
 * the results JSON, resized the same way, or from the pruned .onnx beside it. The results JSON
 * (<model_dir>/../logs/pruning_results_*.json) adds the unpruned model's accuracy as a reference line.
 *
 * Shards of one run (run.js --shard I/N) merge here: given their results (several files, folders, or the
 * runs' --out folders), the checkpoints come from the pruned_models folders beside them; shards of
 * different runs are refused, and cells that no shard finished are reported.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { invokedAs, isEntryPoint, runMain } from './cli/main.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { EVAL_BACKENDS, type EvalBackend } from './cli/run-flags.js';
import { accuracyPlot, METHOD_LABEL, type CompareRow } from './cli/plot.js';
import { describeSetting, type RunResult } from './cli/results.js';
import { cellName } from './cli/cells.js';
import { writeFileAtomic } from './nn/checkpoint-node.js';
import { loadStateDict, modelFromStateDict, resizeToStateDict } from './nn/checkpoint.js';
import { complexity, inferenceSpeed } from './nn/metrics.js';
import { MODEL_NAMES } from './nn/models.js';
import type { Module } from './nn/module.js';
import { loadOnnx, onnxPathBeside } from './onnx/node.js';
import { parseSafetensors, type SafeTensorsFile } from './tensor/safetensors.js';
import { onnxRuntimeSession, requireOnnxRuntime } from './onnx/onnxruntime.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';
import type { ExampleInput } from './prune/index.js';

const FLAGS = {
  model_dir: { kind: 'string', help: 'Folder of pruned checkpoints (run.js writes <out>/pruned_models). Default: ./pruned_models, or with --results the pruned_models folders beside them.' },
  results: { kind: 'strings', help: 'run.js results: JSON files, folders holding pruning_results_*.json, or run.js --out folders (their logs/); several shards of one run merge into one table (default: every <model_dir>/../logs/pruning_results_*.json).' },
  plot: { kind: 'string', help: 'Where to write the accuracy-vs-sparsity SVG. Default: <model_dir>/comparison.svg (./comparison.svg for several folders), and comparison_top5.svg' },
  latency: { kind: 'boolean', help: 'Measure batch-1 latency of each model (--latency=false to skip).', default: true },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
  'eval-backend': { kind: 'string', help: 'What measures the latency: this engine on WebGPU, or onnxruntime-node on the CPU (needs npm install onnxruntime-node).', default: 'webgpu', choices: EVAL_BACKENDS },
} satisfies Record<string, FlagSpec>;

export type { CompareRow };

/** Batch-1 latency in ms of one model, on the engine or through onnxruntime. */
async function latencyOf(model: Module, backend: EvalBackend, inputShape: ExampleInput): Promise<number> {
  if (backend === 'webgpu') return (await inferenceSpeed(model, { batchSize: 8, reps: 3, inputShape })).latencyMs;
  const session = await onnxRuntimeSession(model, inputShape);
  try {
    return await session.latencyMs(5);
  } finally {
    await session.release();
  }
}

const numberOrNull = (v: string | undefined) => (v === undefined || v === 'null' || v === '' ? null : Number(v));

/** One run.js results file and its entries. */
export interface ResultsSource {
  path: string;
  entries: RunResult[];
}

const RESULTS_FILE = /^pruning_results_.*\.json$/;
const resultsIn = (dir: string) => (existsSync(dir) && statSync(dir).isDirectory() ? readdirSync(dir).filter((f) => RESULTS_FILE.test(f)).sort().map((f) => join(dir, f)) : []);

/**
 * The results files: those given (a file; a folder of pruning_results_*.json; or a run's --out folder, whose
 * logs/ holds them), or else every one in <model_dir>/../logs.
 */
export function resultFiles(dir: string | undefined, given?: string[]): string[] {
  if (!given) return dir ? resultsIn(join(dirname(dir), 'logs')) : [];
  return given.flatMap((p) => {
    if (!existsSync(p)) throw new UsageError(`--results ${p} does not exist.`);
    if (!statSync(p).isDirectory()) return [p];
    const found = resultsIn(p).length ? resultsIn(p) : resultsIn(join(p, 'logs'));
    if (!found.length) throw new UsageError(`--results ${p}: no pruning_results_*.json there or in its logs/ folder.`);
    return found;
  });
}

/** The run.js results of these files (see resultFiles), each with its path. */
export function readResultsFiles(dir: string | undefined, given?: string[]): ResultsSource[] {
  return resultFiles(dir, given).map((p) => {
    let entries: unknown;
    try {
      entries = JSON.parse(readFileSync(p, 'utf8'));
    } catch (e) {
      throw new UsageError(`${p} is not a run.js results file (${(e as Error).message}).`);
    }
    if (!Array.isArray(entries)) throw new UsageError(`${p} is not a run.js results file (not a JSON list of cells).`);
    return { path: p, entries: entries as RunResult[] };
  });
}

/** The run.js results next to a pruned_models folder (or the files and folders given). */
export function readResults(dir: string | undefined, files?: string[]): RunResult[] {
  return readResultsFiles(dir, files).flatMap((s) => s.entries);
}

/** The pruned_models folders beside results files (<out>/logs/x.json -> <out>/pruned_models), those that exist. */
export function modelDirsBeside(files: string[]): string[] {
  return [...new Set(files.map((f) => join(dirname(dirname(resolve(f))), 'pruned_models')))].filter((d) => existsSync(d));
}

/** What must agree between the shards of one run, in the order a difference is reported. */
function shardIdentity(e: RunResult): [string, unknown, (a: unknown, b: unknown) => string][] {
  const run = e.run!;
  const o = e.original_model;
  return [
    ...Object.keys(run.settings).map((k) => [`--${k}`, run.settings[k], (a: unknown, b: unknown) => `--${k} ${describeSetting(a)} vs ${describeSetting(b)}`] as [string, unknown, (a: unknown, b: unknown) => string]),
    ['shards', run.shard!.count, (a, b) => `split into ${String(a)} vs ${String(b)} shards`],
    ['model', run.model_sha256, (a, b) => `another model file (SHA-256 ${String(a).slice(0, 12)}... vs ${String(b).slice(0, 12)}...)`],
    ['data', [e.data_format, e.eval_samples, e.input_shape, e.normalization], () => 'other evaluation data (format, sample count, input shape or normalisation)'],
    ['original', [o.parameters, o.flops, o.accuracy, o.top5, o.mean_batch_accuracy], (a, b) => `the original model measured differently (parameters, FLOPs, accuracy: ${JSON.stringify(a)} vs ${JSON.stringify(b)}), so other data or another model`],
  ];
}

/**
 * Checks that the shards among these results (run.js --shard) come from one run, and lists the cells of
 * that run that no shard finished ("g1_s0.5 (shard 2/3)"). Results without shards are not checked (several
 * unsharded runs may be compared side by side). Throws a UsageError naming both files and the difference.
 */
export function mergeShards(sources: ResultsSource[]): { shards: number; missing: string[] } {
  const sharded = sources.flatMap((s) => s.entries.filter((e) => e.run?.shard).map((entry) => ({ path: s.path, entry })));
  if (!sharded.length) return { shards: 0, missing: [] };
  const first = sharded[0];
  const want = shardIdentity(first.entry);
  for (const { path, entry } of sharded) {
    const have = shardIdentity(entry);
    const at = want.findIndex(([, v], i) => have[i]?.[0] !== want[i][0] || JSON.stringify(have[i][1]) !== JSON.stringify(v));
    if (at >= 0) {
      const why = have[at]?.[0] === want[at][0] ? want[at][2](want[at][1], have[at][1]) : 'other flags';
      throw new UsageError(`${first.path} and ${path} are shards of different runs (${why}); merge the shards of one run.`);
    }
  }
  const { cells, shard } = first.entry.run!;
  const done = new Set(sharded.map(({ entry: e }) => cellName(e.group_idx, e.sparsity, e.mode === 'per-group' ? e.group_sparsity : undefined)));
  const missing = cells.map((c, i) => [c, i] as const).filter(([c]) => !done.has(c)).map(([c, i]) => `${c} (shard ${i % shard!.count}/${shard!.count})`);
  return { shards: new Set(sharded.map(({ entry }) => entry.run!.shard!.index)).size, missing };
}

/** The pruned model of a checkpoint, rebuilt (see the file comment), or null when nothing describes its architecture. */
function rebuild(path: string, file: SafeTensorsFile, sourceModel: string | undefined): Module | null {
  const name = file.metadata.model;
  if ((MODEL_NAMES as readonly string[]).includes(name)) return modelFromStateDict(name, file, path);
  if (sourceModel && existsSync(sourceModel)) {
    const model = loadOnnx(sourceModel);
    resizeToStateDict(model, file, path);
    loadStateDict(model, file, path);
    return model;
  }
  const beside = onnxPathBeside(path);
  return existsSync(beside) ? loadOnnx(beside) : null;
}

/**
 * The table rows of the pruned checkpoints in `dir` (or in several folders: the shards of a run), each
 * rebuilt and measured; `o.results` as compare.js --results (default: <dir>/../logs).
 */
export async function compare(dir: string | string[], o: { latency: boolean; gpuId: number; results?: string[]; evalBackend?: EvalBackend }): Promise<CompareRow[]> {
  const dirs = typeof dir === 'string' ? [dir] : dir;
  const where = new Map<string, string>();
  for (const d of dirs) {
    if (!existsSync(d)) throw new UsageError(`--model_dir ${d} does not exist.`);
    for (const f of readdirSync(d).filter((x) => x.endsWith('.safetensors'))) {
      if (where.has(f)) throw new UsageError(`${f} is in both ${where.get(f)} and ${d}: give each cell's checkpoints once.`);
      where.set(f, d);
    }
  }
  const files = [...where.keys()].sort();
  if (!files.length) throw new UsageError(`No .safetensors checkpoints in ${dirs.join(', ')}.`);
  const results = readResults(dirs.length === 1 ? dirs[0] : undefined, o.results);
  // The results entry and method of each checkpoint, by its path's file name.
  const byFile = new Map<string, { entry: RunResult; key: string }>();
  for (const entry of results) {
    for (const key of ['default_pruning', 'intra_fusion', 'folding'] as const) {
      const m = entry[key];
      if (m?.checkpoint) byFile.set(m.checkpoint.replace(/^.*[\\/]/, ''), { entry, key });
    }
  }
  await initRuntime(o.gpuId);
  const rows: CompareRow[] = [];
  for (const f of files) {
    const path = join(where.get(f)!, f);
    const file = parseSafetensors(readFileSync(path), path);
    const meta = file.metadata;
    if (!meta.model || !meta.method) {
      process.stderr.write(`skipping ${f}: not a pruned checkpoint from run.js (no model/method metadata)\n`);
      continue;
    }
    const fromResults = byFile.get(f);
    const inputShape = (meta.input_shape ? meta.input_shape.split(',').map(Number) : fromResults?.entry.input_shape ?? [3, 32, 32]) as ExampleInput;
    const model = rebuild(path, file, meta.source_model ?? fromResults?.entry.model_file);
    let parameters = Number(meta.parameters), flops = Number(meta.flops), latencyMs: number | null = null;
    if (model) {
      ({ parameters, flops } = complexity(model, inputShape));
      if (o.latency) latencyMs = await latencyOf(model, o.evalBackend ?? 'webgpu', inputShape);
      model.dispose();
    } else {
      process.stderr.write(`${f}: ${meta.model} is neither a built-in model nor beside its ONNX file; parameters and FLOPs from its metadata, no latency\n`);
    }
    rows.push({
      file: f, model: meta.model, method: meta.method, group: Number(meta.group_idx), sparsity: Number(meta.sparsity),
      parameters, flops, accuracy: numberOrNull(meta.accuracy), top5: numberOrNull(meta.top5), latencyMs,
    });
  }
  return rows.sort((a, b) => a.model.localeCompare(b.model) || a.group - b.group || a.sparsity - b.sparsity || a.method.localeCompare(b.method));
}

/**
 * One row per unpruned model named in the results (its accuracy is the plots' reference line). Its latency
 * is run.js's, labelled so (`latencyBy`), until measureOriginals measures it as the pruned rows are.
 */
export function originalRows(results: RunResult[]): CompareRow[] {
  return results.filter((e, i) => results.findIndex((x) => x.model_name === e.model_name) === i).map((e) => ({
    file: '', model: e.model_name, method: 'original', group: -1, sparsity: 0, parameters: e.original_model.parameters, flops: e.original_model.flops,
    accuracy: e.original_model.accuracy, top5: e.original_model.top5 ?? null, latencyMs: e.original_model.inference_time * 1e3,
    latencyBy: `run.js, ${e.original_model.eval_backend ?? 'webgpu'}`,
  }));
}

/**
 * Measures each unpruned model's latency the way the pruned rows are measured (same backend, same process),
 * from the file the run loaded (the results' model_file or original_model.checkpoint), so the latency column
 * compares like with like. A model whose file is not at hand keeps run.js's figure, labelled.
 */
export async function measureOriginals(rows: CompareRow[], results: RunResult[], backend: EvalBackend): Promise<CompareRow[]> {
  for (const row of rows) {
    const e = results.find((x) => x.model_name === row.model)!;
    const checkpoint = e.original_model.checkpoint;
    let model: Module | null = null;
    if (e.model_file && existsSync(e.model_file)) model = loadOnnx(e.model_file);
    else if (checkpoint && existsSync(checkpoint) && (MODEL_NAMES as readonly string[]).includes(e.model_name)) model = modelFromStateDict(e.model_name, parseSafetensors(readFileSync(checkpoint), checkpoint), checkpoint);
    if (!model) continue;
    try {
      row.latencyMs = await latencyOf(model, backend, e.input_shape as ExampleInput);
      delete row.latencyBy;
    } finally {
      model.dispose();
    }
  }
  return rows;
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    console.log(usage(invokedAs(import.meta.url, 'node dist/compare.js'), 'Compare pruned checkpoints: table and accuracy-vs-sparsity plots of every method.', FLAGS));
    return 0;
  }
  const given = (a.results as string[] | undefined)?.map((p) => resolve(p));
  const files = resultFiles(a.model_dir === undefined && given ? undefined : resolve((a.model_dir as string | undefined) ?? './pruned_models'), given);
  // With --results and no --model_dir, the checkpoints are beside the results (each shard's <out>/pruned_models).
  const dirs = a.model_dir !== undefined || !given ? [resolve((a.model_dir as string | undefined) ?? './pruned_models')] : modelDirsBeside(files);
  if (!dirs.length) throw new UsageError(`No pruned_models folder beside ${given!.join(', ')}: pass --model_dir.`);
  const sources = readResultsFiles(undefined, files);
  const { shards, missing } = mergeShards(sources); // refuses shards of different runs before any model is loaded
  const evalBackend = a['eval-backend'] as EvalBackend;
  if (evalBackend === 'onnxruntime' && a.latency) await requireOnnxRuntime(); // says how to install it when missing
  const rows = await compare(dirs, { latency: a.latency as boolean, gpuId: a.gpu_id as number, results: files, evalBackend });
  const results = sources.flatMap((s) => s.entries);
  const originals = a.latency ? await measureOriginals(originalRows(results), results, evalBackend) : originalRows(results);
  const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(2));
  const withTop5 = [...rows, ...originals].some((r) => r.top5 !== null && r.top5 !== undefined);
  if (shards) console.log(`merged ${shards} shard${shards === 1 ? '' : 's'} of one run (${files.length} results file${files.length === 1 ? '' : 's'})\n`);
  console.log(`| model | group | sparsity | method | parameters | MFLOPs | accuracy % |${withTop5 ? ' top-5 % |' : ''} latency ms${evalBackend === 'webgpu' ? '' : ` (${evalBackend})`} |`);
  console.log(`|---|---:|---:|---|---:|---:|---:|${withTop5 ? '---:|' : ''}---:|`);
  for (const r of [...originals, ...rows]) {
    const latency = r.latencyMs === null ? '-' : `${r.latencyMs.toFixed(1)}${r.latencyBy ? ` (${r.latencyBy})` : ''}`;
    console.log(`| ${r.model} | ${r.group === -1 && r.method === 'original' ? '-' : r.group === -1 ? 'all' : r.group} | ${r.sparsity} | ${METHOD_LABEL[r.method] ?? r.method} | ${r.parameters} | ${(r.flops / 1e6).toFixed(1)} | ${pct(r.accuracy)} |${withTop5 ? ` ${pct(r.top5)} |` : ''} ${latency} |`);
  }
  if (missing.length) process.stderr.write(`warning: ${missing.length} cell${missing.length === 1 ? '' : 's'} of the run ${missing.length === 1 ? 'is' : 'are'} in no shard's results (rerun or --resume those shards): ${missing.join(', ')}\n`);
  const plot = resolve((a.plot as string | undefined) ?? (dirs.length === 1 ? join(dirs[0], 'comparison.svg') : 'comparison.svg'));
  if (rows.some((r) => r.accuracy !== null)) {
    writeFileAtomic(plot, accuracyPlot(rows, { originals }));
    console.log(`\nplot: ${plot}`);
    if (rows.some((r) => r.top5 !== null && r.top5 !== undefined)) {
      const top5 = plot.replace(/(\.svg)?$/i, '_top5.svg');
      writeFileAtomic(top5, accuracyPlot(rows, { originals, metric: 'top5' }));
      console.log(`plot: ${top5}`);
    }
  } else {
    console.log('\nno plot: the run was data-free (no accuracy was measured)');
  }
  destroyRuntime();
  return 0;
}

if (isEntryPoint(import.meta.url)) runMain(main);
