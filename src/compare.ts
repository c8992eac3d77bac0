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
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { invokedAs, isEntryPoint, runMain } from './cli/main.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { EVAL_BACKENDS, type EvalBackend } from './cli/run-flags.js';
import { accuracyPlot, METHOD_LABEL, type CompareRow } from './cli/plot.js';
import type { RunResult } from './cli/results.js';
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
  model_dir: { kind: 'string', help: 'Folder of pruned checkpoints (run.js writes <out>/pruned_models).', default: './pruned_models' },
  results: { kind: 'string', help: 'run.js results JSON files (default: every <model_dir>/../logs/pruning_results_*.json).' },
  plot: { kind: 'string', help: 'Where to write the accuracy-vs-sparsity SVG. Default: <model_dir>/comparison.svg (and comparison_top5.svg)' },
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

/** The run.js results next to a pruned_models folder (or the files given). */
export function readResults(dir: string, files?: string[]): RunResult[] {
  const logs = join(dirname(dir), 'logs');
  const paths = files ?? (existsSync(logs) ? readdirSync(logs).filter((f) => /^pruning_results_.*\.json$/.test(f)).sort().map((f) => join(logs, f)) : []);
  return paths.flatMap((p) => {
    if (!existsSync(p)) throw new UsageError(`--results ${p} does not exist.`);
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as RunResult[];
    } catch (e) {
      throw new UsageError(`${p} is not a run.js results file (${(e as Error).message}).`);
    }
  });
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

export async function compare(dir: string, o: { latency: boolean; gpuId: number; results?: string[]; evalBackend?: EvalBackend }): Promise<CompareRow[]> {
  if (!existsSync(dir)) throw new UsageError(`--model_dir ${dir} does not exist.`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (!files.length) throw new UsageError(`No .safetensors checkpoints in ${dir}.`);
  const results = readResults(dir, o.results);
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
    const path = join(dir, f);
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

/** One row per unpruned model named in the results (its accuracy is the plots' reference line). */
export function originalRows(results: RunResult[]): CompareRow[] {
  return results.filter((e, i) => results.findIndex((x) => x.model_name === e.model_name) === i).map((e) => ({
    file: '', model: e.model_name, method: 'original', group: -1, sparsity: 0, parameters: e.original_model.parameters, flops: e.original_model.flops,
    accuracy: e.original_model.accuracy, top5: e.original_model.top5 ?? null, latencyMs: e.original_model.inference_time * 1e3,
  }));
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    console.log(usage(invokedAs(import.meta.url, 'node dist/compare.js'), 'Compare pruned checkpoints: table and accuracy-vs-sparsity plots of every method.', FLAGS));
    return 0;
  }
  const dir = resolve(a.model_dir as string);
  const resultFiles = a.results === undefined ? undefined : String(a.results).split(',').map((p) => resolve(p));
  const evalBackend = a['eval-backend'] as EvalBackend;
  if (evalBackend === 'onnxruntime' && a.latency) await requireOnnxRuntime(); // says how to install it when missing
  const rows = await compare(dir, { latency: a.latency as boolean, gpuId: a.gpu_id as number, results: resultFiles, evalBackend });
  const originals = originalRows(readResults(dir, resultFiles));
  const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(2));
  const withTop5 = [...rows, ...originals].some((r) => r.top5 !== null && r.top5 !== undefined);
  console.log(`| model | group | sparsity | method | parameters | MFLOPs | accuracy % |${withTop5 ? ' top-5 % |' : ''} latency ms${evalBackend === 'webgpu' ? '' : ` (${evalBackend})`} |`);
  console.log(`|---|---:|---:|---|---:|---:|---:|${withTop5 ? '---:|' : ''}---:|`);
  for (const r of [...originals, ...rows]) {
    console.log(`| ${r.model} | ${r.group === -1 && r.method === 'original' ? '-' : r.group === -1 ? 'all' : r.group} | ${r.sparsity} | ${METHOD_LABEL[r.method] ?? r.method} | ${r.parameters} | ${(r.flops / 1e6).toFixed(1)} | ${pct(r.accuracy)} |${withTop5 ? ` ${pct(r.top5)} |` : ''} ${r.latencyMs === null ? '-' : r.latencyMs.toFixed(1)} |`);
  }
  const plot = resolve((a.plot as string | undefined) ?? join(dir, 'comparison.svg'));
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
