/**
 * The experiment CLI (`node dist/run.js`, package bin `intra-fusion`), after the reference's main.py:
 * for every group and sparsity, prune a copy of the model with default pruning and with Intra-Fusion,
 * evaluate both (optionally after fine-tuning), and record parameters, FLOPs, accuracy and latency.
 *
 * Results go to <out>/logs/pruning_results_<timestamp>.json, rewritten atomically after every finished
 * (group, sparsity), so an interrupted run loses no finished result; pruned checkpoints go to
 * <out>/pruned_models/. Without a checkpoint, --epochs trains one first (and saves it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { runMain } from './cli/main.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { ProgressBar } from './cli/progress.js';
import { modelFromStateDict } from './nn/checkpoint.js';
import { saveCheckpoint, writeFileAtomic } from './nn/checkpoint-node.js';
import { CIFAR10_STATS, IMAGENET_STATS, parseNormalization, subset, type Cifar10Split, type Normalization } from './nn/cifar10.js';
import { loadCifar10 } from './nn/cifar10-node.js';
import { complexity, evaluate, inferenceSpeed } from './nn/metrics.js';
import { createModel, MODEL_NAMES } from './nn/models.js';
import type { Module } from './nn/module.js';
import { train } from './nn/trainer.js';
import { loadOnnx, onnxPathBeside, saveOnnx } from './onnx/node.js';
import { CRITERIA, dependencyGroups, OptimalTransport, prune } from './prune/index.js';
import { parseSafetensors } from './tensor/safetensors.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';

const FLAGS = {
  'model-name': { kind: 'string', help: 'Model to prune.', default: 'vgg11_bn', choices: MODEL_NAMES },
  group_idxs: { kind: 'ints', help: 'Groups to prune, one run each (index 0 nearest the output).', default: [1, 2, 3] },
  sparsities: { kind: 'numbers', help: 'Fractions of each group\'s channels to remove.', default: [0.3, 0.4, 0.5, 0.6, 0.7] },
  importance_criteria: { kind: 'string', help: 'Channel importance.', default: 'l1', choices: CRITERIA },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
  'data-dir': { kind: 'string', help: 'CIFAR-10 binary files (downloaded there when missing and online).', default: './data/cifar10' },
  checkpoint: { kind: 'string', help: 'Model checkpoint (safetensors, PyTorch names). Default: ./models/<model-name>.safetensors' },
  epochs: { kind: 'int', help: 'Train this many epochs first when the checkpoint does not exist (0: require the checkpoint).', default: 0 },
  'fine-tune-epochs': { kind: 'int', help: 'Fine-tune each pruned model (SGD 0.9, lr 0.01 * 0.5^(epoch/30), no weight decay).', default: 0 },
  'eval-samples': { kind: 'int', help: 'Evaluate on the first N test images (default: all 10000).' },
  'batch-size': { kind: 'int', help: 'Evaluation and training batch size.', default: 128 },
  out: { kind: 'string', help: 'Output folder for logs/ and pruned_models/.', default: '.' },
  normalization: { kind: 'string', help: 'Input normalisation when the checkpoint names none.', default: 'imagenet', choices: ['imagenet', 'cifar10'] },
  'ot-solver': { kind: 'string', help: 'Intra-Fusion transport solver.', default: 'emd', choices: ['emd', 'sinkhorn'] },
  'ot-reg': { kind: 'number', help: 'Sinkhorn entropic regulariser.', default: 0.05 },
  'ot-p': { kind: 'number', help: 'Order of the L_p transport cost.', default: 1 },
  'target-probability': { kind: 'string', help: 'Target marginal.', default: 'uniform', choices: ['uniform', 'importance'] },
  'source-probability': { kind: 'string', help: 'Source marginal.', default: 'uniform', choices: ['uniform', 'importance'] },
  'lamp-reference-bug': { kind: 'boolean', help: 'Reproduce the reference\'s LAMP permutation (to match the paper\'s LAMP numbers).', default: false },
  'save-models': { kind: 'boolean', help: 'Write pruned checkpoints to <out>/pruned_models (use --save-models=false to skip).', default: true },
  seed: { kind: 'int', help: 'Seed for taylor/chip batches and training.', default: 0 },
  // ONNX in and out.
  model: { kind: 'string', help: 'An ONNX model (FILE.onnx, input 3x32x32) to prune instead of a built-in one; --model-name and --checkpoint are then unused.' },
  'export-onnx': { kind: 'boolean', help: 'Also write every model as ONNX: one .onnx beside each pruned checkpoint, and <name>_unpruned.onnx.', default: false },
} satisfies Record<string, FlagSpec>;

interface MethodResult {
  parameters: number;
  flops: number;
  macs: number;
  accuracy: number;
  mean_batch_accuracy: number;
  inference_time: number;
  accuracy_before_fine_tuning?: number;
  checkpoint?: string;
  onnx?: string;
}

export interface RunResult {
  timestamp: string;
  model_name: string;
  importance_criteria: string;
  group_idx: number;
  sparsity: number;
  eval_samples: number;
  original_model: MethodResult;
  default_pruning: MethodResult;
  intra_fusion: MethodResult;
}

const log = (line: string) => process.stdout.write(`${line}\n`);

async function measure(model: Module, test: Cifar10Split, normalization: Normalization, batchSize: number, label: string): Promise<MethodResult> {
  const bar = new ProgressBar(`evaluating ${label}`, test.count);
  const r = await evaluate(model, test, { normalization, batchSize, onProgress: (d) => bar.update(d) });
  const c = complexity(model);
  const speed = await inferenceSpeed(model, { batchSize: Math.min(batchSize, 32), reps: 3 });
  return {
    parameters: c.parameters, flops: c.flops, macs: c.macs,
    accuracy: Number(r.accuracy.toFixed(2)), mean_batch_accuracy: Number(r.meanBatchAccuracy.toFixed(2)),
    inference_time: Number((speed.latencyMs / 1e3).toFixed(5)),
  };
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, FLAGS);
  if (a.help) {
    log(usage('node dist/run.js', 'Prune with default structured pruning and with Intra-Fusion, then evaluate both.', FLAGS));
    return 0;
  }
  const onnxFile = a.model === undefined ? null : resolve(a.model as string);
  const modelName = onnxFile ? basename(onnxFile).replace(/\.onnx$/i, '') : (a['model-name'] as string);
  const groups = a.group_idxs as number[];
  const sparsities = a.sparsities as number[];
  for (const s of sparsities) if (!(s >= 0 && s < 1)) throw new UsageError(`--sparsities: ${s} is not in [0, 1).`);
  for (const flag of ['epochs', 'fine-tune-epochs', 'eval-samples', 'batch-size'] as const) {
    const v = a[flag] as number | undefined;
    if (v !== undefined && v < (flag === 'batch-size' || flag === 'eval-samples' ? 1 : 0)) throw new UsageError(`--${flag} must be ${flag === 'batch-size' || flag === 'eval-samples' ? 'positive' : 'non-negative'}, got ${v}.`);
  }
  const out = resolve(a.out as string);
  const checkpointPath = resolve((a.checkpoint as string | undefined) ?? `./models/${modelName}.safetensors`);
  const batchSize = a['batch-size'] as number;

  const rt = await initRuntime(a.gpu_id as number);
  log(`adapter: ${rt.adapterDescription}`);
  const data = await loadCifar10(resolve(a['data-dir'] as string), {
    onProgress: (() => {
      let bar: ProgressBar | null = null;
      return (r: number, total: number) => (bar ??= new ProgressBar('downloading CIFAR-10 (bytes)', total || 170_052_171)).update(r);
    })(),
  });
  const test = a['eval-samples'] ? subset(data.test, a['eval-samples'] as number) : data.test;

  // The checkpoint: load it, or train one first.
  let normalization: Normalization = a.normalization === 'cifar10' ? CIFAR10_STATS : IMAGENET_STATS;
  if (!onnxFile && !existsSync(checkpointPath)) {
    const epochs = a.epochs as number;
    if (!epochs) throw new UsageError(`Checkpoint ${checkpointPath} does not exist: pass --checkpoint FILE, or --epochs N to train one first.`);
    log(`no checkpoint at ${checkpointPath}: training ${modelName} for ${epochs} epochs`);
    const model = createModel(modelName);
    await train(model, data.train, {
      epochs, lr: 0.05, momentum: 0.9, weightDecay: 5e-4, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize,
      normalization, seed: a.seed as number, checkpointDir: join(out, 'training', modelName), resume: true, test, log,
      metadata: { model: modelName },
    });
    await saveCheckpoint(model, checkpointPath, {
      model: modelName, epochs: String(epochs), normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','),
    });
    model.dispose();
    log(`saved ${checkpointPath}`);
  }
  let fresh: () => Module;
  if (onnxFile) {
    const onnx = onnxSource(onnxFile);
    fresh = onnx.fresh;
    normalization = onnx.normalization ?? normalization;
  } else {
    const file = parseSafetensors(readFileSync(checkpointPath), checkpointPath);
    normalization = parseNormalization(file.metadata.normalize_mean, file.metadata.normalize_std) ?? normalization;
    fresh = () => modelFromStateDict(modelName, file, checkpointPath);
  }
  const exportOptions = (metadata: Record<string, string>) => ({
    inputShape: [3, 32, 32] as [number, number, number], graphName: modelName,
    metadata: { ...metadata, normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(',') },
  });

  const probe = fresh();
  const groupCount = dependencyGroups(probe).length;
  probe.dispose();
  for (const g of groups) if (g < 0 || g >= groupCount) throw new UsageError(`--group_idxs: ${modelName} has groups 0..${groupCount - 1}, not ${g}.`);

  const timestamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsPath = join(out, 'logs', `pruning_results_${timestamp}.json`);
  const results: RunResult[] = [];
  log(`evaluating the original ${modelName} on ${test.count} test images`);
  const original = fresh();
  const originalResult = await measure(original, test, normalization, batchSize, 'original');
  if (a['export-onnx']) {
    originalResult.onnx = join(out, 'pruned_models', `${modelName}_unpruned.onnx`);
    await saveOnnx(original, originalResult.onnx, exportOptions({ model: modelName, method: 'unpruned' }));
  }
  original.dispose();
  log(`original: ${originalResult.accuracy}% accuracy, ${originalResult.parameters} parameters, ${(originalResult.flops / 1e6).toFixed(1)} MFLOPs`);

  const ot = new OptimalTransport({
    p: a['ot-p'] as number, solver: a['ot-solver'] as 'emd' | 'sinkhorn', reg: a['ot-reg'] as number,
    targetProbability: a['target-probability'] as 'uniform', sourceProbability: a['source-probability'] as 'uniform',
  });
  const criterion = a.importance_criteria as string;
  const needsData = criterion === 'taylor' || criterion === 'chip';
  for (const g of groups) {
    for (const s of sparsities) {
      const entry = { timestamp: new Date().toISOString(), model_name: modelName, importance_criteria: criterion, group_idx: g, sparsity: s, eval_samples: test.count, original_model: originalResult } as RunResult;
      for (const [key, method] of [['default_pruning', null], ['intra_fusion', ot]] as const) {
        const label = `${key === 'default_pruning' ? 'default' : 'Intra-Fusion'} group ${g} sparsity ${s}`;
        const model = fresh();
        await prune(model, {
          importanceCriteria: criterion, sparsity: s, groupIdxs: [g], optimalTransport: method,
          data: needsData ? { train: data.train, normalization } : undefined,
          lampReferencePermutation: a['lamp-reference-bug'] as boolean,
          onProgress: (m) => log(`  ${m}`),
        });
        let before: number | undefined;
        const ftEpochs = a['fine-tune-epochs'] as number;
        if (ftEpochs > 0) {
          before = (await evaluate(model, test, { normalization, batchSize })).accuracy;
          log(`  fine-tuning ${label} for ${ftEpochs} epochs (from ${before.toFixed(2)}%)`);
          await train(model, data.train, {
            epochs: ftEpochs, lr: 0.01, momentum: 0.9, weightDecay: 0, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize,
            normalization, seed: (a.seed as number) + g * 1000 + Math.round(s * 100), log: (l) => log(`    ${l}`),
          });
        }
        const r = await measure(model, test, normalization, batchSize, label);
        if (before !== undefined) r.accuracy_before_fine_tuning = Number(before.toFixed(2));
        const name = `${modelName}_${criterion}_g${g}_s${s}_${key === 'default_pruning' ? 'default' : 'intra_fusion'}.safetensors`;
        const path = join(out, 'pruned_models', name);
        const metadata = {
          model: modelName, method: key, group_idx: String(g), sparsity: String(s), importance_criteria: criterion,
          accuracy: String(r.accuracy), eval_samples: String(test.count), parameters: String(r.parameters), flops: String(r.flops),
          normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','), input_shape: '3,32,32',
        };
        if (a['save-models']) {
          await saveCheckpoint(model, path, metadata);
          r.checkpoint = path;
        }
        if (a['export-onnx']) {
          r.onnx = onnxPathBeside(path);
          await saveOnnx(model, r.onnx, exportOptions(metadata));
        }
        entry[key] = r;
        model.dispose();
        log(`${label}: ${r.accuracy}% accuracy, ${r.parameters} parameters`);
      }
      results.push(entry);
      writeFileAtomic(resultsPath, JSON.stringify(results, null, 2));
    }
  }
  log('\n| group | sparsity | default % | Intra-Fusion % | parameters |');
  log('|---:|---:|---:|---:|---:|');
  for (const r of results) log(`| ${r.group_idx} | ${r.sparsity} | ${r.default_pruning.accuracy} | ${r.intra_fusion.accuracy} | ${r.intra_fusion.parameters} |`);
  log(`\nresults: ${resultsPath}`);
  destroyRuntime();
  return 0;
}

// ------------------------------------------------------------------ ONNX input

/** An ONNX model as the run's model: imported afresh for every cell, with the normalisation it names. */
function onnxSource(path: string): { fresh: () => Module; normalization: Normalization | null } {
  const probe = loadOnnx(path);
  probe.dispose();
  // The pruner traces and the metrics count on CIFAR-10-sized images until prune() takes an example input.
  if (probe.inputShape.join() !== '3,32,32') throw new UsageError(`--model ${path}: its input is ${probe.inputShape.join('x')}; this run prunes and evaluates 3x32x32 (CIFAR-10) models.`);
  return { fresh: () => loadOnnx(path), normalization: parseNormalization(probe.metadata.normalize_mean, probe.metadata.normalize_std) };
}

if (process.argv[1] && /run\.(js|ts|mjs)$/.test(process.argv[1])) runMain(main);
