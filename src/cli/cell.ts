/**
 * One method of one cell: prune a fresh copy of the model, fine-tune it if asked, evaluate it (accuracy,
 * parameters, FLOPs, latency) and save it (checkpoint, ONNX). Also the evaluation of the original model.
 */
import { join } from 'node:path';
import { seededRandom } from '../nn/init.js';
import { saveCheckpoint } from '../nn/checkpoint-node.js';
import type { Cifar10Split, Normalization } from '../nn/cifar10.js';
import { complexity, evaluate, inferenceSpeed } from '../nn/metrics.js';
import type { Module } from '../nn/module.js';
import { train } from '../nn/trainer.js';
import { onnxPathBeside, saveOnnx } from '../onnx/node.js';
import { OptimalTransport, prune, type ExampleInput } from '../prune/index.js';
import { cellSeed, type Cell, type Method } from './cells.js';
import type { ModelSource } from './model-source.js';
import { ProgressBar } from './progress.js';
import type { MethodResult } from './results.js';
import type { RunOptions } from './run-flags.js';

/** What every cell of a run shares. */
export interface RunContext {
  o: RunOptions;
  source: ModelSource;
  train: Cifar10Split;
  test: Cifar10Split;
  ot: OptimalTransport;
  log: (line: string) => void;
}

export function optimalTransportFor(o: RunOptions): OptimalTransport {
  return new OptimalTransport({
    p: o.otP, solver: o.otSolver, reg: o.otReg, targetProbability: o.targetProbability, sourceProbability: o.sourceProbability,
  });
}

/** ONNX export options: the graph named after the model, the run's settings and normalisation as metadata. */
export function exportOptions(ctx: RunContext, metadata: Record<string, string>) {
  const { normalization } = ctx.source;
  return {
    inputShape: ctx.o.exampleInput, graphName: ctx.o.modelName,
    metadata: { ...metadata, normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(',') },
  };
}

/** Accuracy on the test split, complexity and latency of one model. */
export async function measure(model: Module, test: Cifar10Split, normalization: Normalization, batchSize: number, label: string, inputShape: ExampleInput): Promise<MethodResult> {
  const bar = new ProgressBar(`evaluating ${label}`, test.count);
  const r = await evaluate(model, test, { normalization, batchSize, onProgress: (d) => bar.update(d) });
  const c = complexity(model, inputShape);
  const speed = await inferenceSpeed(model, { batchSize: Math.min(batchSize, 32), reps: 3, inputShape });
  return {
    parameters: c.parameters, flops: c.flops, macs: c.macs,
    accuracy: Number(r.accuracy.toFixed(2)), mean_batch_accuracy: Number(r.meanBatchAccuracy.toFixed(2)),
    inference_time: Number((speed.latencyMs / 1e3).toFixed(5)),
  };
}

/** The unpruned model's result (and its ONNX export with --export-onnx). */
export async function measureOriginal(ctx: RunContext): Promise<MethodResult> {
  const { o, source, test, log } = ctx;
  log(`evaluating the original ${o.modelName} on ${test.count} test images`);
  const original = source.fresh();
  const result = await measure(original, test, source.normalization, o.batchSize, 'original', o.exampleInput);
  if (o.exportOnnx) {
    result.onnx = join(o.out, 'pruned_models', `${o.modelName}_unpruned.onnx`);
    await saveOnnx(original, result.onnx, exportOptions(ctx, { model: o.modelName, method: 'unpruned' }));
  }
  original.dispose();
  log(`original: ${result.accuracy}% accuracy, ${result.parameters} parameters, ${(result.flops / 1e6).toFixed(1)} MFLOPs`);
  return result;
}

/**
 * Prunes, (fine-tunes,) evaluates and saves one method of one cell. `cellIndex` counts the finished cells
 * before this one (it seeds the method's random draws).
 */
export async function runMethod(ctx: RunContext, cell: Cell, { key, name: fusion, label: name }: Method, cellIndex: number, first: boolean): Promise<MethodResult> {
  const { o, source, test, log } = ctx;
  const { normalization } = source;
  const label = `${name} ${cell.where}`;
  const needsData = o.criterion === 'taylor' || o.criterion === 'chip';
  const model = source.fresh();
  await prune(model, {
    importanceCriteria: o.criterion, sparsity: cell.sparsity, groupIdxs: o.mode === 'group' ? [cell.g] : undefined, fusion, optimalTransport: ctx.ot,
    global: o.global, maxGroupSparsity: o.maxGroupSparsity, batchGroups: o.batchGroups, iterativeSteps: o.iterativeSteps, roundTo: o.roundTo,
    exampleInput: o.exampleInput,
    data: needsData ? { train: ctx.train, normalization } : undefined,
    lampReferencePermutation: o.lampReferenceBug,
    random: seededRandom(cellSeed(o.seed, cellIndex, cell.s, fusion)),
    onProgress: (m) => log(`  ${m}`),
  });
  // For the interrupted-run test: die (as a kill would) inside cell N, after its first method.
  if (first && Number(process.env.INTRA_FUSION_CRASH_AT_CELL) === cellIndex + 1) process.kill(process.pid, 'SIGKILL');
  let before: number | undefined;
  if (o.fineTuneEpochs > 0) {
    before = (await evaluate(model, test, { normalization, batchSize: o.batchSize })).accuracy;
    log(`  fine-tuning ${label} for ${o.fineTuneEpochs} epochs (from ${before.toFixed(2)}%)`);
    await train(model, ctx.train, {
      epochs: o.fineTuneEpochs, lr: 0.01, momentum: 0.9, weightDecay: 0, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize: o.batchSize,
      normalization, seed: o.seed + cell.g * 1000 + Math.round(cell.s * 100), log: (l) => log(`    ${l}`),
    });
  }
  const r = await measure(model, test, normalization, o.batchSize, label, o.exampleInput);
  if (before !== undefined) r.accuracy_before_fine_tuning = Number(before.toFixed(2));
  const path = join(o.out, 'pruned_models', `${o.modelName}_${o.criterion}_${cell.name}_${key === 'default_pruning' ? 'default' : key}.safetensors`);
  const metadata = {
    model: o.modelName, method: key, group_idx: String(cell.g), sparsity: String(cell.s), importance_criteria: o.criterion,
    ...(o.groupSparsity ? { group_sparsity: JSON.stringify(o.groupSparsity) } : {}), mode: o.mode,
    accuracy: String(r.accuracy), eval_samples: String(test.count), parameters: String(r.parameters), flops: String(r.flops),
    normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','), input_shape: o.exampleInput.join(','),
  };
  if (o.saveModels) {
    await saveCheckpoint(model, path, metadata);
    r.checkpoint = path;
  }
  if (o.exportOnnx) {
    r.onnx = onnxPathBeside(path);
    await saveOnnx(model, r.onnx, exportOptions(ctx, metadata));
  }
  model.dispose();
  log(`${label}: ${r.accuracy}% accuracy, ${r.parameters} parameters`);
  return r;
}
