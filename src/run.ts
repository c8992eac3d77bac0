/**
 * The experiment CLI (`node dist/run.js`, package bin `intra-fusion`), after the reference's main.py:
 * for every group and sparsity, prune a copy of the model with default pruning and with Intra-Fusion,
 * evaluate both (optionally after fine-tuning), and record parameters, FLOPs, accuracy and latency.
 * Beyond one group per run: --whole-network and --global prune every group per sparsity, --group-sparsity
 * gives per-group ratios in one run; --iterative-steps, --round-to and --fusion apply to all of them.
 *
 * Results go to <out>/logs/pruning_results_<timestamp>.json, rewritten atomically after every finished
 * (group, sparsity), so an interrupted run loses no finished result; pruned checkpoints go to
 * <out>/pruned_models/. Without a checkpoint, --epochs trains one first (and saves it).
 *
 * The parts, in src/cli/: run-flags.ts (flags and their checks), model-source.ts (built-in, checkpoint or
 * ONNX model), cells.ts (which cells and methods run), cell.ts (prune and evaluate one method),
 * results.ts (results file and summary).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DataError, IntraFusionError } from './errors.js';
import { invokedAs, isEntryPoint, runMain } from './cli/main.js';
import { methodsFor, planCells, shardCells, type MethodKey } from './cli/cells.js';
import { keepGroupInputs, measureOriginal, optimalTransportFor, runMethod, type RunContext } from './cli/cell.js';
import { checkClassCount, checkDataFlags, openRunData } from './cli/data-source.js';
import { checkModelFiles, describeModel, openModelSource } from './cli/model-source.js';
import { prepareOutDir, ResultsFile, summaryTable, type RunIdentity, type RunResult } from './cli/results.js';
import { checkRunArgs, resultSettings, runUsage } from './cli/run-flags.js';
import { formatNormalization } from './data/normalization.js';
import { noGrad } from './tensor/autograd.js';
import { dependencyGroups } from './prune/index.js';
import { requireOnnxRuntime } from './onnx/onnxruntime.js';
import { destroyRuntime, fromArray, initRuntime, tidy } from './tensor/tensor.js';

export type { MethodResult, RunResult } from './cli/results.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Printed when the adapter is a software one; the ratio is bench/eval-backends.ts's on a 2-core machine (README). */
export const SOFTWARE_ADAPTER_HINT =
  'hint: this is a software (fallback) WebGPU adapter; --eval-backend onnxruntime evaluated VGG11-BN about 15x faster on a 2-core CPU (npm install onnxruntime-node).';

export async function main(argv: string[]): Promise<number> {
  const o = checkRunArgs(argv);
  if (!o) {
    log(runUsage(invokedAs(import.meta.url, 'node dist/run.js')));
    return 0;
  }
  // Everything that can be checked without the GPU and the data, before any long work.
  if (o.evalBackend === 'onnxruntime') await requireOnnxRuntime(); // says how to install it when missing
  checkModelFiles(o);
  checkDataFlags(o);
  prepareOutDir(o.out, log);
  const results = o.resume ? ResultsFile.resume(o.resume, o) : ResultsFile.create(o.out, undefined, o.shard);

  const rt = await initRuntime(o.gpuId);
  log(`adapter: ${rt.adapterDescription}`);
  if (rt.isFallback && o.evalBackend === 'webgpu') log(SOFTWARE_ADAPTER_HINT);
  const { normalization, source: normalizationSource } = describeModel(o);
  log(`normalisation: ${formatNormalization(normalization)} (${normalizationSource})`);
  const data = await openRunData(o, normalization, log);
  const test = data.test;
  const source = await openModelSource(o, normalization, { train: data.calibration, test }, log);

  // One traced forward pass: a file whose tensors do not fit together fails here, naming it and the layer.
  const probe = source.fresh();
  let groupCount: number;
  let outputs: number;
  try {
    groupCount = dependencyGroups(probe, { exampleInput: o.exampleInput }).length;
    outputs = noGrad(() => tidy(() => probe.call(fromArray(new Float32Array(o.exampleInput.reduce((a, b) => a * b)), [1, ...o.exampleInput])).shape.slice(1).reduce((a, b) => a * b, 1)));
  } catch (e) {
    if (e instanceof IntraFusionError) throw new DataError(`${source.file}: the model does not run at the file's shapes: ${e.message}`);
    throw e;
  } finally {
    probe.dispose();
  }
  checkClassCount(data, outputs);
  const cells = planCells(o, o.modelName, groupCount);
  const methods = methodsFor(o.fusion);
  const modelSha256 = createHash('sha256').update(readFileSync(source.file)).digest('hex');
  results.checkSameModel(modelSha256);
  const run: RunIdentity = { settings: resultSettings(o), model_sha256: modelSha256, cells: cells.map((c) => c.name), ...(o.shard ? { shard: o.shard } : {}) };
  const mine = shardCells(cells, o.shard);
  if (o.shard) log(`shard ${o.shard.index}/${o.shard.count}: ${mine.length} of ${cells.length} cells (${mine.map((c) => c.name).join(', ')})`);

  const ctx: RunContext = { o, source, train: data.calibration, test, ot: optimalTransportFor(o), log };
  const setup = { eval_samples: test?.count ?? 0, data: data.path, data_format: data.format, input_shape: [...o.exampleInput], normalization };
  results.checkSameSetup(setup, o.evalBackend);
  const keys = methods.map((m) => m.key);
  const todo = mine.filter((cell) => !results.finished(cell, keys));
  if (o.resume) log(`resuming ${o.resume}: ${mine.length - todo.length} of ${mine.length} cells finished`);
  const todoGroups = [...new Set(todo.map((cell) => cell.g))];
  const original = results.entries[0]?.original_model ?? await measureOriginal(ctx, todoGroups);
  if (!ctx.kept) await keepGroupInputs(ctx, todoGroups);
  for (const cell of todo) {
    const entry = {
      timestamp: new Date().toISOString(), model_name: o.modelName, importance_criteria: o.criterion, group_idx: cell.g, sparsity: cell.s,
      ...(o.groupSparsity ? { group_sparsity: o.groupSparsity } : {}), mode: o.mode, iterative_steps: o.iterativeSteps, round_to: o.roundTo,
      ...setup, evaluated: test !== null, ...(o.onnxFile ? { model_file: o.onnxFile } : {}), original_model: original, run,
    } as RunResult;
    for (const method of methods) entry[method.key as MethodKey] = await runMethod(ctx, cell, method, cells.indexOf(cell), method === methods[0]);
    results.add(entry);
  }
  log('');
  for (const line of summaryTable(results.entries, methods)) log(line);
  log(`\nresults: ${results.path}`);
  destroyRuntime();
  return 0;
}

if (isEntryPoint(import.meta.url)) runMain(main);
