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
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataError } from './errors.js';
import { runMain } from './cli/main.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './cli/args.js';
import { ProgressBar } from './cli/progress.js';
import { modelFromStateDict } from './nn/checkpoint.js';
import { saveCheckpoint, writeFileAtomic } from './nn/checkpoint-node.js';
import { seededRandom } from './nn/init.js';
import { CIFAR10_STATS, IMAGENET_STATS, parseNormalization, subset, type Cifar10Split, type Normalization } from './nn/cifar10.js';
import { loadCifar10 } from './nn/cifar10-node.js';
import { complexity, evaluate, inferenceSpeed } from './nn/metrics.js';
import { createModel, MODEL_NAMES } from './nn/models.js';
import type { Module } from './nn/module.js';
import { train } from './nn/trainer.js';
import { loadOnnx, onnxPathBeside, saveOnnx } from './onnx/node.js';
import { CRITERIA, dependencyGroups, FUSION_METHODS, OptimalTransport, prune, type ExampleInput, type Fusion } from './prune/index.js';
import { parseSafetensors } from './tensor/safetensors.js';
import { destroyRuntime, initRuntime } from './tensor/tensor.js';

const FLAGS = {
  'model-name': { kind: 'string', help: 'Model to prune.', default: 'vgg11_bn', choices: MODEL_NAMES },
  group_idxs: { kind: 'ints', help: 'Groups to prune, one run each (index 0 nearest the output).', default: [1, 2, 3] },
  sparsities: { kind: 'numbers', help: 'Fractions of each group\'s channels to remove.', default: [0.3, 0.4, 0.5, 0.6, 0.7] },
  importance_criteria: { kind: 'string', help: 'Channel importance.', default: 'l1', choices: CRITERIA },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
  'data-dir': { kind: 'string', help: 'CIFAR-10 binary files (downloaded there when missing and online).', default: './data/cifar10' },
  checkpoint: { kind: 'string', help: 'Model checkpoint (safetensors, PyTorch names). Default: ./models/<model-name>.safetensors, else the shipped VGG11-BN (models/vgg11_bn_cifar10.fp16.safetensors) for vgg11_bn' },
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
  seed: { kind: 'int', help: 'Seed for taylor/chip batches, random importance and training.', default: 0 },
  fusion: { kind: 'string', help: `Methods to run: both (default pruning and Intra-Fusion), all, or one of ${FUSION_METHODS.map((m) => `${m.name} (${m.label})`).join(', ')}.`, default: 'both', choices: ['both', 'all', ...FUSION_METHODS.map((m) => m.name)] },
  'whole-network': { kind: 'boolean', help: 'Prune every group at once per sparsity (group_idxs ignored; results have group_idx -1).', default: false },
  global: { kind: 'boolean', help: 'Rank channels across all groups (implies --whole-network).', default: false },
  'max-group-sparsity': { kind: 'number', help: 'With --global: the most any group may lose.', default: 0.9 },
  'group-sparsity': { kind: 'pairs', help: 'Per-group ratios GROUP=SPARSITY,... pruned in one run (group_idxs and sparsities ignored; group_idx and sparsity -1 in the results).' },
  'batch-groups': { kind: 'boolean', help: 'With --whole-network or --group-sparsity: score and fuse all groups on the same weights in one OT batch (default: one after another, as the reference).', default: false },
  'iterative-steps': { kind: 'int', help: 'Prune in N steps on a linear schedule, re-scoring each step (all groups at once).', default: 1 },
  'round-to': { kind: 'int', help: 'Keep a multiple of this many channels per group.', default: 1 },
  'input-shape': { kind: 'ints', help: 'The model\'s input C H W (CIFAR-10 evaluation needs 3 32 32).', default: [3, 32, 32], aliases: ['exampleInput', 'example-input'] },
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
  /** -1: every group at once (--whole-network, --global, --group-sparsity). */
  group_idx: number;
  /** -1 with --group-sparsity (see group_sparsity). */
  sparsity: number;
  group_sparsity?: Record<number, number>;
  mode: 'group' | 'whole-network' | 'global' | 'per-group';
  iterative_steps: number;
  round_to: number;
  eval_samples: number;
  original_model: MethodResult;
  /** Typed for the default --fusion both; --fusion none or ot leaves the other method's entry out. */
  default_pruning: MethodResult;
  intra_fusion: MethodResult;
  /** With --fusion folding or all. */
  folding?: MethodResult;
}

/** The methods --fusion picks from the table: 'both' is default pruning and Intra-Fusion, 'all' every method. */
const methodsFor = (fusion: string) => FUSION_METHODS.filter((m) => fusion === 'all' || fusion === m.name || (fusion === 'both' && (m.name === 'none' || m.name === 'ot')));

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Checkpoints shipped in the repository's models/ folder (beside src/ and dist/), by model name. */
const SHIPPED_CHECKPOINTS: Record<string, string> = { vgg11_bn: 'vgg11_bn_cifar10.fp16.safetensors' };

/**
 * The checkpoint to use: --checkpoint, else ./models/<model-name>.safetensors when it exists (or when
 * --epochs will train it), else the shipped one, so the first run needs no flag.
 */
function checkpointFor(modelName: string, flag: string | undefined, epochs: number): string {
  if (flag) return resolve(flag);
  const local = resolve(`./models/${modelName}.safetensors`);
  const shipped = SHIPPED_CHECKPOINTS[modelName] && fileURLToPath(new URL(`../models/${SHIPPED_CHECKPOINTS[modelName]}`, import.meta.url));
  return existsSync(local) || epochs > 0 || !shipped || !existsSync(shipped) ? local : shipped;
}

/** A seed per (seed, cell, sparsity, method), so each method of each cell draws its own batches, reproducibly. */
const cellSeed = (seed: number, cell: number, sparsity: number, fusion: Fusion) =>
  seed * 1_000_003 + cell * 2003 + Math.round(sparsity * 1000) * 7 + FUSION_METHODS.findIndex((m) => m.name === fusion);

async function measure(model: Module, test: Cifar10Split, normalization: Normalization, batchSize: number, label: string, inputShape: ExampleInput): Promise<MethodResult> {
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
  const inputShape = a['input-shape'] as number[];
  if (inputShape.length !== 3 || inputShape.some((v) => v < 1)) throw new UsageError(`--input-shape takes three positive sizes C H W, got ${inputShape.join(' ')}.`);
  if (inputShape.join() !== '3,32,32') throw new UsageError(`--input-shape ${inputShape.join(' ')}: this CLI evaluates on CIFAR-10, whose images are 3 32 32.`);
  const exampleInput = inputShape as ExampleInput;
  const groupSparsity = a['group-sparsity'] as Record<number, number> | undefined;
  const global = a.global as boolean;
  const mode: RunResult['mode'] = groupSparsity ? 'per-group' : global ? 'global' : a['whole-network'] ? 'whole-network' : 'group';
  for (const [g, s] of Object.entries(groupSparsity ?? {})) if (!(s >= 0 && s < 1)) throw new UsageError(`--group-sparsity: ${s} for group ${g} is not in [0, 1).`);
  for (const flag of ['iterative-steps', 'round-to'] as const) if ((a[flag] as number) < 1) throw new UsageError(`--${flag} must be positive, got ${a[flag] as number}.`);
  const maxGroupSparsity = a['max-group-sparsity'] as number;
  if (!(maxGroupSparsity > 0 && maxGroupSparsity < 1)) throw new UsageError(`--max-group-sparsity must be in (0, 1), got ${maxGroupSparsity}.`);
  const out = resolve(a.out as string);
  const checkpointPath = checkpointFor(modelName, a.checkpoint as string | undefined, a.epochs as number);
  const batchSize = a['batch-size'] as number;

  const rt = await initRuntime(a.gpu_id as number);
  log(`adapter: ${rt.adapterDescription}`);
  const dataDir = resolve(a['data-dir'] as string);
  const data = await loadCifar10(dataDir, {
    url: process.env.INTRA_FUSION_CIFAR10_URL, // a mirror of the official archive (same MD5), when set
    onProgress: (() => {
      let bar: ProgressBar | null = null;
      return (r: number, total: number) => (bar ??= new ProgressBar('downloading CIFAR-10 (bytes)', total || 170_052_171)).update(r);
    })(),
  }).catch((e: unknown) => {
    if (!(e instanceof DataError)) throw e;
    throw new DataError(`${e.message} If you have CIFAR-10 elsewhere, pass --data-dir DIR (the folder with data_batch_1.bin ... test_batch.bin, or its cifar-10-batches-bin/).`);
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
    log(`checkpoint: ${checkpointPath}`);
    const file = parseSafetensors(readFileSync(checkpointPath), checkpointPath);
    normalization = parseNormalization(file.metadata.normalize_mean, file.metadata.normalize_std) ?? normalization;
    fresh = () => modelFromStateDict(modelName, file, checkpointPath);
  }
  const exportOptions = (metadata: Record<string, string>) => ({
    inputShape: exampleInput, graphName: modelName,
    metadata: { ...metadata, normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(',') },
  });

  const probe = fresh();
  const groupCount = dependencyGroups(probe, { exampleInput }).length;
  probe.dispose();
  const checked = mode === 'group' ? groups : mode === 'per-group' ? Object.keys(groupSparsity!).map(Number) : [];
  for (const g of checked) if (g < 0 || g >= groupCount) throw new UsageError(`--${mode === 'group' ? 'group_idxs' : 'group-sparsity'}: ${modelName} has groups 0..${groupCount - 1}, not ${g}.`);
  // One cell per (group, sparsity), per sparsity for the whole network, or one for per-group ratios.
  const cells: { g: number; s: number; sparsity: number | Record<number, number> }[] =
    mode === 'per-group' ? [{ g: -1, s: -1, sparsity: groupSparsity! }]
      : mode === 'group' ? groups.flatMap((g) => sparsities.map((s) => ({ g, s, sparsity: s })))
        : sparsities.map((s) => ({ g: -1, s, sparsity: s }));

  const timestamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsPath = join(out, 'logs', `pruning_results_${timestamp}.json`);
  const results: RunResult[] = [];
  log(`evaluating the original ${modelName} on ${test.count} test images`);
  const original = fresh();
  const originalResult = await measure(original, test, normalization, batchSize, 'original', exampleInput);
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
  const methods = methodsFor(a.fusion as string);
  for (const { g, s, sparsity } of cells) {
    const entry = {
      timestamp: new Date().toISOString(), model_name: modelName, importance_criteria: criterion, group_idx: g, sparsity: s,
      ...(groupSparsity ? { group_sparsity: groupSparsity } : {}), mode, iterative_steps: a['iterative-steps'] as number, round_to: a['round-to'] as number,
      eval_samples: test.count, original_model: originalResult,
    } as RunResult;
    const cellName = mode === 'per-group' ? `gs${Object.entries(groupSparsity!).map(([k, v]) => `${k}=${v}`).join('-')}` : `g${g === -1 ? 'all' : g}_s${s}`;
    const where = mode === 'per-group' ? `groups ${Object.entries(groupSparsity!).map(([k, v]) => `${k}=${v}`).join(',')}` : `${g === -1 ? `all groups (${mode})` : `group ${g}`} sparsity ${s}`;
    for (const { key, name: fusion, label: methodLabel } of methods) {
      const label = `${methodLabel} ${where}`;
      const model = fresh();
      await prune(model, {
        importanceCriteria: criterion, sparsity, groupIdxs: mode === 'group' ? [g] : undefined, fusion, optimalTransport: ot,
        global, maxGroupSparsity, batchGroups: a['batch-groups'] as boolean, iterativeSteps: a['iterative-steps'] as number, roundTo: a['round-to'] as number, exampleInput,
        data: needsData ? { train: data.train, normalization } : undefined,
        lampReferencePermutation: a['lamp-reference-bug'] as boolean,
        random: seededRandom(cellSeed(a.seed as number, results.length, s, fusion)),
        onProgress: (m) => log(`  ${m}`),
      });
      // For the interrupted-run test: die (as a kill would) inside cell N, after its first method.
      if (key === methods[0].key && Number(process.env.INTRA_FUSION_CRASH_AT_CELL) === results.length + 1) process.kill(process.pid, 'SIGKILL');
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
      const r = await measure(model, test, normalization, batchSize, label, exampleInput);
      if (before !== undefined) r.accuracy_before_fine_tuning = Number(before.toFixed(2));
      const path = join(out, 'pruned_models', `${modelName}_${criterion}_${cellName}_${key === 'default_pruning' ? 'default' : key}.safetensors`);
      const metadata = {
        model: modelName, method: key, group_idx: String(g), sparsity: String(s), importance_criteria: criterion,
        ...(groupSparsity ? { group_sparsity: JSON.stringify(groupSparsity) } : {}), mode,
        accuracy: String(r.accuracy), eval_samples: String(test.count), parameters: String(r.parameters), flops: String(r.flops),
        normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','), input_shape: exampleInput.join(','),
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
  log(`\n| group | sparsity | ${methods.map((m) => `${m.label} %`).join(' | ')} | parameters |`);
  log(`|---:|---:|${methods.map(() => '---:|').join('')}---:|`);
  for (const r of results) {
    const group = r.mode === 'per-group' ? Object.keys(r.group_sparsity!).join(',') : r.group_idx === -1 ? 'all' : r.group_idx;
    const sparsity = r.mode === 'per-group' ? Object.values(r.group_sparsity!).join(',') : r.sparsity;
    const results = methods.map((m) => r[m.key] as MethodResult | undefined);
    log(`| ${group} | ${sparsity} | ${results.map((m) => m?.accuracy ?? '-').join(' | ')} | ${results.find((m) => m)?.parameters ?? '-'} |`);
  }
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
