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
import { DataError } from './errors.js';
import { isEntryPoint, runMain } from './cli/main.js';
import { methodsFor, planCells, type MethodKey } from './cli/cells.js';
import { measureOriginal, optimalTransportFor, runMethod, type RunContext } from './cli/cell.js';
import { checkModelFiles, openModelSource } from './cli/model-source.js';
import { ProgressBar } from './cli/progress.js';
import { prepareOutDir, ResultsFile, summaryTable, type RunResult } from './cli/results.js';
import { checkRunArgs, runUsage } from './cli/run-flags.js';
import { subset } from './nn/cifar10.js';
import { loadCifar10 } from './nn/cifar10-node.js';
import { dependencyGroups } from './prune/index.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';

export type { MethodResult, RunResult } from './cli/results.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

export async function main(argv: string[]): Promise<number> {
  const o = checkRunArgs(argv);
  if (!o) {
    log(runUsage());
    return 0;
  }
  // Everything that can be checked without the GPU and the data, before any long work.
  checkModelFiles(o);
  prepareOutDir(o.out, log);
  const results = o.resume ? ResultsFile.resume(o.resume, o) : ResultsFile.create(o.out);

  const rt = await initRuntime(o.gpuId);
  log(`adapter: ${rt.adapterDescription}`);
  const data = await loadCifar10(o.dataDir, {
    url: process.env.INTRA_FUSION_CIFAR10_URL, // a mirror of the official archive (same MD5), when set
    onProgress: (() => {
      let bar: ProgressBar | null = null;
      return (r: number, total: number) => (bar ??= new ProgressBar('downloading CIFAR-10 (bytes)', total || 170_052_171)).update(r);
    })(),
  }).catch((e: unknown) => {
    if (!(e instanceof DataError)) throw e;
    throw new DataError(`${e.message} If you have CIFAR-10 elsewhere, pass --data-dir DIR (the folder with data_batch_1.bin ... test_batch.bin, or its cifar-10-batches-bin/).`);
  });
  const test = o.evalSamples ? subset(data.test, o.evalSamples) : data.test;
  const source = await openModelSource(o, { train: data.train, test }, log);

  const probe = source.fresh();
  const groupCount = dependencyGroups(probe, { exampleInput: o.exampleInput }).length;
  probe.dispose();
  const cells = planCells(o, o.modelName, groupCount);
  const methods = methodsFor(o.fusion);

  const ctx: RunContext = { o, source, train: data.train, test, ot: optimalTransportFor(o), log };
  results.checkEvalSamples(test.count);
  const keys = methods.map((m) => m.key);
  const todo = cells.filter((cell) => !results.finished(cell, keys));
  if (o.resume) log(`resuming ${o.resume}: ${cells.length - todo.length} of ${cells.length} cells finished`);
  const original = results.entries[0]?.original_model ?? await measureOriginal(ctx);
  for (const cell of todo) {
    const entry = {
      timestamp: new Date().toISOString(), model_name: o.modelName, importance_criteria: o.criterion, group_idx: cell.g, sparsity: cell.s,
      ...(o.groupSparsity ? { group_sparsity: o.groupSparsity } : {}), mode: o.mode, iterative_steps: o.iterativeSteps, round_to: o.roundTo,
      eval_samples: test.count, original_model: original,
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
