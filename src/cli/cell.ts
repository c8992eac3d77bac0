/**
 * One method of one cell: prune a fresh copy of the model, fine-tune it if asked, evaluate it (accuracy,
 * parameters, FLOPs, latency) and save it (checkpoint, ONNX). Also the evaluation of the original model.
 */
import { join } from 'node:path';
import { seededRandom } from '../nn/init.js';
import { saveCheckpoint } from '../nn/checkpoint-node.js';
import type { Dataset } from '../data/dataset.js';
import { complexity, evaluate, evaluateLogits, inferenceSpeed, keepInputs, type EvalResult, type KeptInputs } from '../nn/metrics.js';
import { groupResumeModule, modulesBefore, prefixState, samePrefixState, type PrefixState } from '../nn/resume.js';
import type { Module } from '../nn/module.js';
import { train } from '../nn/trainer.js';
import { onnxPathBeside, saveOnnx } from '../onnx/node.js';
import { evaluateOnnxRuntime, onnxRuntimeSession } from '../onnx/onnxruntime.js';
import { dependencyGroups, OptimalTransport, prune, type ExampleInput, type PruneOptions } from '../prune/index.js';
import { cellSeed, type Cell, type Method } from './cells.js';
import type { ModelSource } from './model-source.js';
import { ProgressBar } from './progress.js';
import type { MethodResult } from './results.js';
import type { EvalBackend, RunOptions } from './run-flags.js';

/** What every cell of a run shares. */
export interface RunContext {
  o: RunOptions;
  source: ModelSource;
  /** Calibration (taylor, chip) and fine-tuning data; null in a data-free run. */
  train: Dataset | null;
  /** Evaluation data; null in a data-free run (accuracy null). */
  test: Dataset | null;
  ot: OptimalTransport;
  log: (line: string) => void;
  /** Per group: where its pruned models are evaluated from (see keepGroupInputs). */
  kept?: Map<number, GroupResume>;
}

/** The original's activations at a group's first layer, and its state before that layer. */
export interface GroupResume {
  /** Module path of the group's first layer. */
  path: string;
  inputs: KeptInputs;
  /** Parameters and buffers of every module before it: a pruned model resumes only where its own are equal. */
  prefix: PrefixState;
  prefixPaths: string[];
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

/**
 * Accuracy (top-1, top-5) on the evaluation data (null without data), complexity and latency of one model.
 * With the onnxruntime backend the model is exported to ONNX in memory and onnxruntime-node runs both the
 * evaluation and the latency passes.
 */
export async function measure(model: Module, test: Dataset | null, batchSize: number, label: string, inputShape: ExampleInput, backend: EvalBackend, resumeFrom?: KeptInputs, keep?: Module[]): Promise<MethodResult & { kept?: Map<Module, KeptInputs> }> {
  let r: (EvalResult & { kept?: Map<Module, KeptInputs> }) | null = null;
  let latencyMs: number;
  const from = resumeFrom && backend === 'webgpu' ? resumeFrom : undefined;
  const options = test ? { batchSize, resumeFrom: from, keep: backend === 'webgpu' ? keep : undefined, onProgress: ((bar: ProgressBar) => (d: number) => bar.update(d))(new ProgressBar(`evaluating ${label}${backend === 'webgpu' ? '' : ` (${backend})`}${from ? ` from ${from.module.path}` : ''}`, test.count)) } : null;
  if (backend === 'onnxruntime') {
    const session = await onnxRuntimeSession(model, inputShape);
    try {
      if (test) r = await evaluateLogits(session.logits, test, options!);
      latencyMs = await session.latencyMs(5);
    } finally {
      await session.release();
    }
  } else {
    if (test) r = await evaluate(model, test, options!);
    latencyMs = (await inferenceSpeed(model, { batchSize: Math.min(batchSize, 32), reps: 3, inputShape })).latencyMs;
  }
  const c = complexity(model, inputShape);
  return {
    parameters: c.parameters, flops: c.flops, macs: c.macs,
    accuracy: r ? Number(r.accuracy.toFixed(2)) : null, ...(r?.top5 != null ? { top5: Number(r.top5.toFixed(2)) } : {}),
    mean_batch_accuracy: r ? Number(r.meanBatchAccuracy.toFixed(2)) : null,
    inference_time: Number((latencyMs / 1e3).toFixed(5)), eval_backend: backend,
    ...(r?.kept ? { kept: r.kept } : {}),
  };
}

const describeAccuracy = (r: MethodResult) => (r.accuracy === null ? 'not evaluated (no data)' : `${r.accuracy}% accuracy${r.top5 !== undefined ? ` (top-5 ${r.top5}%)` : ''}`);

/**
 * The unpruned model's result (and its ONNX export with --export-onnx). While evaluating it, the inputs of
 * `groups`' first layers are kept for evaluating only what changed (see resumeModules).
 */
export async function measureOriginal(ctx: RunContext, groups: number[] = []): Promise<MethodResult> {
  const { o, source, test, log } = ctx;
  if (test) log(`evaluating the original ${o.modelName} on ${test.count} samples`);
  const original = source.fresh();
  try {
    const at = resumeModules(ctx, original, groups);
    const { kept, ...result } = await measure(original, test, o.batchSize, 'original', o.exampleInput, o.evalBackend, undefined, at.size ? keptModules(at) : undefined);
    if (kept) await storeResumes(ctx, original, at, kept);
    ctx.kept ??= new Map(); // decided here: no pass of its own (keepGroupInputs) is needed
    if (!o.onnxFile) result.checkpoint = source.file; // compare.js measures its latency from it
    // Every shard evaluates the original; only the first writes its ONNX (shards may share --out).
    if (o.exportOnnx && !o.shard?.index) {
      result.onnx = join(o.out, 'pruned_models', `${o.modelName}_unpruned.onnx`);
      await saveOnnx(original, result.onnx, exportOptions(ctx, { model: o.modelName, method: 'unpruned' }));
    }
    log(`original: ${describeAccuracy(result)}, ${result.parameters} parameters, ${(result.flops / 1e6).toFixed(1)} MFLOPs`);
    return result;
  } finally {
    original.dispose();
  }
}

/**
 * Evaluating only what changed: a single-group cell changes the layers from the group's first layer on,
 * and prune() gives every layer it did not reach its exact original values back (bn-fold.ts
 * restoreUnpruned), so every pruned model of a group computes, up to that layer's input, exactly what the
 * original does. The original's activations there are kept while it is evaluated (or, for a resumed run,
 * in a pass of their own: keepGroupInputs), memory-bounded on the host; runMethod evaluates each pruned
 * model from there after checking that its parameters and buffers before that layer equal the original's
 * bit for bit. Whole-network, per-group, global, iterative and fine-tuning cells, --reference-quirks (the
 * reference leaves every layer folded without eps), groups whose first layer's input is no cut (a
 * residual shortcut or a concat reads around it), and --eval-backend onnxruntime (it runs a whole exported
 * graph) evaluate whole. Returns group -> the module whose input is kept, and the modules before it.
 */
function resumeModules(ctx: RunContext, model: Module, groups: number[]): Map<number, ResumeAt> {
  const { o, test, log } = ctx;
  const at = new Map<number, ResumeAt>();
  if (!test || o.mode !== 'group' || o.fineTuneEpochs > 0 || o.iterativeSteps > 1 || o.evalBackend !== 'webgpu' || !groups.length) return at;
  if (o.referenceQuirks) {
    log('--reference-quirks leaves every layer batch-norm-folded without eps: pruned models are evaluated whole');
    return at;
  }
  const all = dependencyGroups(model, { inputShape: o.exampleInput });
  for (const g of groups) {
    const members = [...all[g].producers, ...all[g].batchNorms, ...all[g].consumers.map((c) => c.layer)];
    const m = groupResumeModule(model, members, o.exampleInput);
    const prefixPaths = m && modulesBefore(model, m.path, o.exampleInput);
    if (!m || !prefixPaths) {
      log(`group ${g}: its first layer's input is no cut (something later reads around it); its pruned models are evaluated whole`);
      continue;
    }
    // A group whose first layer reads the model's input (only its ancestors come before it) saves nothing, and would keep the images.
    if (prefixPaths.every((p) => p === '' || m.path.startsWith(`${p}.`))) continue;
    at.set(g, { module: m, prefixPaths });
  }
  return at;
}

/** Where a group's pruned models resume: the module whose input is kept, and the paths of the modules before it. */
interface ResumeAt {
  module: Module;
  prefixPaths: string[];
}

const keptModules = (at: Map<number, ResumeAt>) => [...new Set([...at.values()].map((r) => r.module))];

/** Records, per group, the kept activations and the original's state before them (for resumePointFor). */
async function storeResumes(ctx: RunContext, model: Module, at: Map<number, ResumeAt>, kept: Map<Module, KeptInputs>): Promise<void> {
  ctx.kept = new Map();
  for (const [g, { module, prefixPaths }] of at) {
    const inputs = kept.get(module);
    if (inputs) ctx.kept.set(g, { path: module.path, inputs, prefixPaths, prefix: await prefixState(model, prefixPaths) });
  }
  const over = [...at.keys()].filter((g) => !ctx.kept!.has(g));
  if (at.size) ctx.log(`pruned models of group${ctx.kept.size === 1 ? '' : 's'} ${[...ctx.kept.keys()].join(', ') || '(none)'} are evaluated from the group's first layer on${over.length ? `; group${over.length > 1 ? 's' : ''} ${over.join(', ')} whole (over the memory bound)` : ''}`);
}

/** For a resumed run (the original's result read back, not evaluated): keeps the groups' inputs in a pass of their own. */
export async function keepGroupInputs(ctx: RunContext, groups: number[]): Promise<void> {
  const { o, source, test } = ctx;
  const original = source.fresh();
  try {
    const at = resumeModules(ctx, original, groups);
    if (!at.size || !test) return;
    const bar = new ProgressBar(`keeping the original's activations for group${at.size > 1 ? 's' : ''} ${[...at.keys()].join(', ')}`, test.count);
    await storeResumes(ctx, original, at, await keepInputs(original, test, keptModules(at), { batchSize: o.batchSize, onProgress: (d) => bar.update(d) }));
  } finally {
    original.dispose();
  }
}

/** Where `model` (a pruned model of the cell's group) can be evaluated from, or undefined (evaluate whole). */
export async function resumePointFor(ctx: RunContext, cell: Cell, model: Module, label: string): Promise<KeptInputs | undefined> {
  const kept = ctx.kept?.get(cell.g);
  if (!kept || ctx.o.fineTuneEpochs > 0 || ctx.o.mode !== 'group') return undefined;
  const module = model.namedModules().find(([, m]) => m.path === kept.path)?.[1];
  if (module && samePrefixState(kept.prefix, await prefixState(model, kept.prefixPaths))) return { ...kept.inputs, module };
  ctx.log(`  ${label}: layers before ${kept.path} differ from the original's; evaluated whole`);
  return undefined;
}

/** What prune() gets for one method of one cell: every pruning flag of the run, passed on. */
export function pruneOptionsFor(ctx: RunContext, cell: Cell, fusion: Method['name'], cellIndex: number): PruneOptions {
  const { o, log } = ctx;
  const needsData = o.criterion === 'taylor' || o.criterion === 'chip';
  return {
    importanceCriteria: o.criterion, sparsity: cell.sparsity, groupIdxs: o.mode === 'group' ? [cell.g] : undefined, fusion, optimalTransport: ctx.ot,
    global: o.global, maxGroupSparsity: o.maxGroupSparsity, batchGroups: o.batchGroups, iterativeSteps: o.iterativeSteps, roundTo: o.roundTo,
    exampleInput: o.exampleInput,
    data: needsData ? ctx.train ?? undefined : undefined, samples: o.calibrationSamples,
    lampReferencePermutation: o.lampReferenceBug, referenceQuirks: o.referenceQuirks,
    random: seededRandom(cellSeed(o.seed, cellIndex, cell.s, fusion)),
    onProgress: (m) => log(`  ${m}`),
  };
}

/**
 * Prunes, (fine-tunes,) evaluates and saves one method of one cell. `cellIndex` is the cell's place in
 * the plan (it seeds the method's random draws, so a resumed cell equals an uninterrupted run's).
 */
export async function runMethod(ctx: RunContext, cell: Cell, { key, name: fusion, label: name }: Method, cellIndex: number, first: boolean): Promise<MethodResult> {
  const { o, source, test, log } = ctx;
  const { normalization } = source;
  const label = `${name} ${cell.where}`;
  const model = source.fresh();
  await prune(model, pruneOptionsFor(ctx, cell, fusion, cellIndex));
  // For the interrupted-run test: die (as a kill would) inside cell N, after its first method.
  if (first && Number(process.env.INTRA_FUSION_CRASH_AT_CELL) === cellIndex + 1) process.kill(process.pid, 'SIGKILL');
  let before: number | undefined;
  if (o.fineTuneEpochs > 0 && ctx.train) {
    if (test) before = (o.evalBackend === 'onnxruntime' ? await evaluateOnnxRuntime(model, test, { batchSize: o.batchSize, inputShape: o.exampleInput }) : await evaluate(model, test, { batchSize: o.batchSize })).accuracy;
    log(`  fine-tuning ${label} for ${o.fineTuneEpochs} epochs${before === undefined ? '' : ` (from ${before.toFixed(2)}%)`}`);
    await train(model, ctx.train, {
      epochs: o.fineTuneEpochs, lr: 0.01, momentum: 0.9, weightDecay: 0, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize: o.batchSize,
      normalization, seed: o.seed + cell.g * 1000 + Math.round(cell.s * 100), log: (l) => log(`    ${l}`),
    });
  }
  const r = await measure(model, test, o.batchSize, label, o.exampleInput, o.evalBackend, await resumePointFor(ctx, cell, model, label));
  if (before !== undefined) r.accuracy_before_fine_tuning = Number(before.toFixed(2));
  const path = join(o.out, 'pruned_models', `${o.modelName}_${o.criterion}_${cell.name}_${key === 'default_pruning' ? 'default' : key}.safetensors`);
  const metadata = {
    model: o.modelName, method: key, group_idx: String(cell.g), sparsity: String(cell.s), importance_criteria: o.criterion,
    ...(o.groupSparsity ? { group_sparsity: JSON.stringify(o.groupSparsity) } : {}), mode: o.mode,
    accuracy: String(r.accuracy), ...(r.top5 !== undefined ? { top5: String(r.top5) } : {}), eval_samples: String(test?.count ?? 0),
    parameters: String(r.parameters), flops: String(r.flops), ...(o.onnxFile ? { source_model: o.onnxFile } : {}),
    normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','), input_shape: o.exampleInput.join(','),
  };
  if (o.saveModels) {
    await saveCheckpoint(model, path, metadata);
    r.checkpoint = path;
  }
  // A model imported from ONNX has no built-in architecture to rebuild from a checkpoint, and a data-free
  // run's output is the pruned file itself: both always get their ONNX.
  if (o.exportOnnx || o.onnxFile || !test) {
    r.onnx = onnxPathBeside(path);
    await saveOnnx(model, r.onnx, exportOptions(ctx, metadata));
  }
  model.dispose();
  log(`${label}: ${describeAccuracy(r)}, ${r.parameters} parameters`);
  return r;
}
