/**
 * run.js's flags and their checks. Every flag is validated here, before the run loads data or touches
 * the GPU, so a bad flag fails in a second with a message that names it. (Checks that need the model,
 * such as group indices, are in cells.ts and still run before the first evaluation.)
 */
import { resolve } from 'node:path';
import { DATA_FORMATS, type DataFormat } from '../data/node.js';
import { NORMALIZATION_PRESETS } from '../data/normalization.js';
import { MODEL_NAMES } from '../nn/models.js';
import { CRITERIA, FUSION_METHODS, type ExampleInput } from '../prune/index.js';
import { parseArgs, usage, UsageError, type FlagSpec } from './args.js';

export const EVAL_BACKENDS = ['webgpu', 'onnxruntime'] as const;
export type EvalBackend = (typeof EVAL_BACKENDS)[number];

export const RUN_FLAGS = {
  'model-name': { kind: 'string', help: 'Model to prune.', default: 'vgg11_bn', choices: MODEL_NAMES },
  group_idxs: { kind: 'ints', help: 'Groups to prune, one run each (index 0 nearest the output).', default: [1, 2, 3] },
  sparsities: { kind: 'numbers', help: 'Fractions of each group\'s channels to remove.', default: [0.3, 0.4, 0.5, 0.6, 0.7] },
  importance_criteria: { kind: 'string', help: 'Channel importance.', default: 'l1', choices: CRITERIA },
  gpu_id: { kind: 'int', help: 'Adapter: -1 software/fallback, 0 default, 1 low-power.', default: 0 },
  data: { kind: 'string', help: 'Evaluation (and calibration) data: an image folder (one sub-folder per class), CIFAR-10\'s binary batches, a .safetensors/.npz file with x [N,C,H,W] and y [N], or a folder with x.npy and y.npy; "none" for a data-free run (prune and export, no evaluation). Default: CIFAR-10 from --data-dir for built-in models, none for --model FILE.onnx.' },
  'data-format': { kind: 'string', help: 'What --data is (default: detected).', choices: DATA_FORMATS },
  'data-dir': { kind: 'string', help: 'CIFAR-10 binary files (downloaded there when missing and online). Default: ./data/cifar10 (built-in models).' },
  'calibration-data': { kind: 'string', help: 'Data for taylor/chip and fine-tuning, in any --data layout. Default: CIFAR-10\'s training split for CIFAR-10, else --data itself.' },
  'calibration-samples': { kind: 'int', help: 'Samples taylor and chip draw (shuffled, seeded).', default: 640 },
  resize: { kind: 'string', help: 'Image folders: the shorter side before the centre crop to --input-shape H W ("none": crop only). Default: round(max(H, W) * 256 / 224), e.g. 256 for 224.' },
  checkpoint: { kind: 'string', help: 'Model checkpoint (safetensors, PyTorch names). Default: ./models/<model-name>.safetensors, else the shipped VGG11-BN (models/vgg11_bn_cifar10.fp16.safetensors) for vgg11_bn' },
  epochs: { kind: 'int', help: 'Train this many epochs first when the checkpoint does not exist (0: require the checkpoint).', default: 0 },
  'fine-tune-epochs': { kind: 'int', help: 'Fine-tune each pruned model (SGD 0.9, lr 0.01 * 0.5^(epoch/30), no weight decay).', default: 0 },
  'eval-samples': { kind: 'int', help: 'Evaluate on N samples (default: all): the first N, or N spread over the classes of an image folder.' },
  'batch-size': { kind: 'int', help: 'Evaluation and training batch size.', default: 128 },
  out: { kind: 'string', help: 'Output folder for logs/ and pruned_models/.', default: '.' },
  resume: { kind: 'string', help: 'Continue this results file (logs/pruning_results_*.json of an interrupted run with the same settings): its finished cells are skipped, new ones are added to it.' },
  normalization: { kind: 'string', help: 'Input normalisation preset. Default: the model\'s own (checkpoint or ONNX metadata), else imagenet.', choices: Object.keys(NORMALIZATION_PRESETS) },
  mean: { kind: 'numbers', help: 'Normalisation mean per channel (with --std), e.g. 0.485 0.456 0.406.', repeats: true },
  std: { kind: 'numbers', help: 'Normalisation std per channel (with --mean).', repeats: true },
  'ot-solver': { kind: 'string', help: 'Intra-Fusion transport solver.', default: 'emd', choices: ['emd', 'sinkhorn'] },
  'ot-reg': { kind: 'number', help: 'Sinkhorn entropic regulariser.', default: 0.05 },
  'ot-p': { kind: 'number', help: 'Order of the L_p transport cost.', default: 1 },
  'target-probability': { kind: 'string', help: 'Target marginal.', default: 'uniform', choices: ['uniform', 'importance'] },
  'source-probability': { kind: 'string', help: 'Source marginal.', default: 'uniform', choices: ['uniform', 'importance'] },
  'lamp-reference-bug': { kind: 'boolean', help: 'Reproduce the reference\'s LAMP permutation (to match the paper\'s LAMP numbers).', default: false },
  'reference-quirks': { kind: 'boolean', help: 'Reproduce the reference\'s quirks to match its numbers: batch-norms folded without eps (changes the model even at sparsity 0), the biases folding adds to bias-free convs kept, and --lamp-reference-bug.', default: false },
  'allow-non-finite': { kind: 'boolean', help: 'Load a model whose weights hold NaN or infinity (refused by default, naming the tensor).', default: false },
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
  'input-shape': { kind: 'ints', help: 'The model\'s input C H W, any size. Default: the ONNX model\'s static input shape, else 3 32 32.', aliases: ['exampleInput', 'example-input'], repeats: true },
  // ONNX in and out.
  model: { kind: 'string', help: 'An ONNX model (FILE.onnx, any static input size) to prune instead of a built-in one; --model-name and --checkpoint are then unused.' },
  'export-onnx': { kind: 'boolean', help: 'Also write every model as ONNX: one .onnx beside each pruned checkpoint, and <name>_unpruned.onnx.', default: false },
  shard: { kind: 'string', help: 'Run one shard of the cells, for job arrays: I/N runs cells I, I+N, I+2N, ... of the plan (I from 0 to N-1: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with sbatch --array=0-(N-1), or $(JOB_COMPLETION_INDEX)/N in a Kubernetes indexed Job). Every shard also evaluates the original model, and writes its own results file (..._shard-I-of-N.json); compare.js merges them.' },
  'eval-backend': { kind: 'string', help: 'What runs the evaluations (accuracy, latency): this engine on WebGPU, or onnxruntime-node on the CPU (each model exported to ONNX in memory; needs npm install onnxruntime-node; much faster where the only adapter is a software one). Pruning stays on WebGPU.', default: 'webgpu', choices: EVAL_BACKENDS },
} satisfies Record<string, FlagSpec>;

export type RunMode = 'group' | 'whole-network' | 'global' | 'per-group';
export type Fusion = 'both' | 'all' | (typeof FUSION_METHODS)[number]['name'];

/** run.js's settings after every check: typed, resolved paths, the mode decided. */
export interface RunOptions {
  /** An ONNX file to prune (--model), or null for a built-in model. */
  onnxFile: string | null;
  modelName: string;
  /** --checkpoint as given (resolved), or undefined for the default lookup (model-source.ts). */
  checkpoint: string | undefined;
  groups: number[];
  sparsities: number[];
  groupSparsity: Record<number, number> | undefined;
  mode: RunMode;
  criterion: string;
  gpuId: number;
  /** --data: a path, 'none' (data-free), or undefined (the default: CIFAR-10 for built-in models, none for ONNX). */
  data: string | undefined;
  dataFormat: DataFormat | undefined;
  /** --data-dir as given, or undefined. */
  dataDir: string | undefined;
  calibrationData: string | undefined;
  calibrationSamples: number;
  /** Image folders: the resize before the crop; undefined = default, null = crop only. */
  resize: number | null | undefined;
  epochs: number;
  fineTuneEpochs: number;
  evalSamples: number | undefined;
  batchSize: number;
  out: string;
  /** --resume FILE (resolved). */
  resume: string | undefined;
  normalization: string | undefined;
  mean: number[] | undefined;
  std: number[] | undefined;
  otSolver: 'emd' | 'sinkhorn';
  otReg: number;
  otP: number;
  targetProbability: 'uniform' | 'importance';
  sourceProbability: 'uniform' | 'importance';
  lampReferenceBug: boolean;
  referenceQuirks: boolean;
  allowNonFinite: boolean;
  saveModels: boolean;
  seed: number;
  fusion: Fusion;
  global: boolean;
  maxGroupSparsity: number;
  batchGroups: boolean;
  iterativeSteps: number;
  roundTo: number;
  /** --input-shape as given; undefined: the ONNX model's, else 3 32 32 (see model-source.ts). */
  inputShape: ExampleInput | undefined;
  /** The input shape the run uses (set once the model is known). */
  exampleInput: ExampleInput;
  exportOnnx: boolean;
  evalBackend: EvalBackend;
  /** --shard I/N: this run does cells I, I+N, ... of the plan (index 0-based). */
  shard: Shard | undefined;
}

export interface Shard {
  index: number;
  count: number;
}

/** The number of cells the flags plan (cells.ts planCells makes them), known before the model is loaded. */
export function cellCount(o: Pick<RunOptions, 'mode' | 'groups' | 'sparsities'>): number {
  return o.mode === 'per-group' ? 1 : o.mode === 'group' ? o.groups.length * o.sparsities.length : o.sparsities.length;
}

/** --shard I/N, checked: I and N integers, 0 <= I < N, and no more shards than the run has cells. */
export function parseShard(text: string, cells: number): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`--shard takes I/N, this shard's index from 0 and the shard count (e.g. 0/3), got "${text}"${/^\/|\/$/.test(text.trim()) ? ' (an unset variable?)' : ''}.`);
  const [index, count] = [Number(m[1]), Number(m[2])];
  if (count < 1) throw new UsageError(`--shard ${text}: the shard count must be at least 1.`);
  if (index >= count) throw new UsageError(`--shard ${text}: the index counts from 0, so it is 0 to ${count - 1} (sbatch --array=0-${count - 1}; a 1-based task id is $((SLURM_ARRAY_TASK_ID - 1))).`);
  if (count > cells) throw new UsageError(`--shard ${text}: the run has ${cells} cell${cells === 1 ? '' : 's'}, so at most ${cells} shard${cells === 1 ? '' : 's'}; shard ${cells} on would have none.`);
  return { index, count };
}

/**
 * The flags that shape a run's results, by flag name (not paths, outputs or the adapter): the shards of one
 * run agree on all of them, which --resume of a shard and compare.js's merge check.
 */
export function resultSettings(o: RunOptions): Record<string, unknown> {
  return {
    'model-name': o.modelName, mode: o.mode, group_idxs: o.mode === 'group' ? o.groups : null, sparsities: o.mode === 'per-group' ? null : o.sparsities,
    'group-sparsity': o.groupSparsity ?? null, importance_criteria: o.criterion, fusion: o.fusion, seed: o.seed,
    'data-format': o.dataFormat ?? null, 'eval-samples': o.evalSamples ?? null, 'calibration-samples': o.calibrationSamples, resize: o.resize === undefined ? 'default' : o.resize,
    'input-shape': o.exampleInput, normalization: o.normalization ?? null, mean: o.mean ?? null, std: o.std ?? null, 'batch-size': o.batchSize, 'fine-tune-epochs': o.fineTuneEpochs,
    'ot-solver': o.otSolver, 'ot-reg': o.otReg, 'ot-p': o.otP, 'target-probability': o.targetProbability, 'source-probability': o.sourceProbability,
    'max-group-sparsity': o.maxGroupSparsity, 'batch-groups': o.batchGroups, 'iterative-steps': o.iterativeSteps, 'round-to': o.roundTo,
    'lamp-reference-bug': o.lampReferenceBug, 'reference-quirks': o.referenceQuirks, 'allow-non-finite': o.allowNonFinite, 'eval-backend': o.evalBackend,
  };
}

/** The --help text; `command` is how the user invoked run.js (cli/main.ts invokedAs). */
export const runUsage = (command = 'node dist/run.js') => usage(command, 'Prune with default structured pruning and with Intra-Fusion, then evaluate both.', RUN_FLAGS);

/** Parses and checks run.js's flags; null for --help. Throws a UsageError naming the flag otherwise. */
export function checkRunArgs(argv: string[]): RunOptions | null {
  const a = parseArgs(argv, RUN_FLAGS);
  if (a.help) return null;
  const onnxFile = a.model === undefined ? null : resolve(a.model as string);
  const modelName = onnxFile ? onnxFile.replace(/^.*[\\/]/, '').replace(/\.onnx$/i, '') : (a['model-name'] as string);
  const sparsities = a.sparsities as number[];
  for (const s of sparsities) if (!(s >= 0 && s < 1)) throw new UsageError(`--sparsities: ${s} is not in [0, 1).`);
  for (const flag of ['epochs', 'fine-tune-epochs', 'eval-samples', 'batch-size'] as const) {
    const v = a[flag] as number | undefined;
    if (v !== undefined && v < (flag === 'batch-size' || flag === 'eval-samples' ? 1 : 0)) throw new UsageError(`--${flag} must be ${flag === 'batch-size' || flag === 'eval-samples' ? 'positive' : 'non-negative'}, got ${v}.`);
  }
  const inputShape = a['input-shape'] as number[] | undefined;
  if (inputShape && (inputShape.length !== 3 || inputShape.some((v) => !(v >= 1)))) throw new UsageError(`--input-shape takes three positive sizes C H W, got ${inputShape.join(' ')}.`);
  const resizeText = a.resize as string | undefined;
  const resize = resizeText === undefined ? undefined : resizeText === 'none' ? null : Number(resizeText);
  if (typeof resize === 'number' && !(Number.isInteger(resize) && resize >= 1)) throw new UsageError(`--resize takes a positive integer or "none", got "${resizeText}".`);
  if (!((a['calibration-samples'] as number) >= 1)) throw new UsageError(`--calibration-samples must be positive, got ${a['calibration-samples'] as number}.`);
  const [mean, std] = [a.mean as number[] | undefined, a.std as number[] | undefined];
  if (!mean !== !std) throw new UsageError('--mean and --std go together: give both.');
  if (mean && std && (mean.length !== std.length || ![1, 3].includes(mean.length) || std.some((v) => v <= 0))) throw new UsageError(`--mean/--std take one value per channel (3, or 1 for grey-scale), std positive; got ${mean.join(' ')} / ${std.join(' ')}.`);
  if (a['calibration-data'] === 'none') throw new UsageError('--calibration-data none: leave the flag out instead.');
  const groupSparsity = a['group-sparsity'] as Record<number, number> | undefined;
  const global = a.global as boolean;
  const mode: RunMode = groupSparsity ? 'per-group' : global ? 'global' : a['whole-network'] ? 'whole-network' : 'group';
  for (const [g, s] of Object.entries(groupSparsity ?? {})) if (!(s >= 0 && s < 1)) throw new UsageError(`--group-sparsity: ${s} for group ${g} is not in [0, 1).`);
  for (const flag of ['iterative-steps', 'round-to'] as const) if ((a[flag] as number) < 1) throw new UsageError(`--${flag} must be positive, got ${a[flag] as number}.`);
  const maxGroupSparsity = a['max-group-sparsity'] as number;
  if (!(maxGroupSparsity > 0 && maxGroupSparsity < 1)) throw new UsageError(`--max-group-sparsity must be in (0, 1), got ${maxGroupSparsity}.`);
  if (!((a['ot-p'] as number) >= 1)) throw new UsageError(`--ot-p must be at least 1 (the order of the L_p cost), got ${a['ot-p'] as number}.`);
  if (!((a['ot-reg'] as number) > 0)) throw new UsageError(`--ot-reg must be positive, got ${a['ot-reg'] as number}.`);
  // Flags that another flag would silently override.
  const conflicts: [keyof typeof RUN_FLAGS, keyof typeof RUN_FLAGS, string][] = [
    ['group-sparsity', 'global', 'per-group ratios and a global ranking are two different ways to set the sparsities'],
    ['group-sparsity', 'whole-network', '--group-sparsity already prunes its groups in one run'],
    ['group-sparsity', 'sparsities', '--group-sparsity gives the ratios'],
    ['group-sparsity', 'group_idxs', '--group-sparsity names the groups'],
    ['whole-network', 'group_idxs', '--whole-network prunes every group'],
    ['global', 'group_idxs', '--global prunes every group'],
    ['model', 'model-name', '--model names the ONNX file to prune'],
    ['model', 'checkpoint', 'the ONNX file carries its weights'],
    ['model', 'epochs', 'an ONNX model is not trained here'],
  ];
  for (const [x, y, why] of conflicts) if (a.given.has(x) && a.given.has(y)) throw new UsageError(`--${x} and --${y} cannot be used together: ${why}.`);
  if (a.given.has('max-group-sparsity') && !global) throw new UsageError('--max-group-sparsity applies to --global only.');
  if (a.given.has('batch-groups') && mode === 'group') throw new UsageError('--batch-groups applies to --whole-network, --global or --group-sparsity only.');
  if (a.fusion === 'none' || a.fusion === 'folding') {
    for (const f of ['ot-solver', 'ot-reg', 'ot-p', 'target-probability', 'source-probability'] as const) {
      if (a.given.has(f)) throw new UsageError(`--${f} sets Intra-Fusion's transport, but --fusion ${a.fusion as string} does not run Intra-Fusion.`);
    }
  }
  if (a.given.has('ot-reg') && a['ot-solver'] !== 'sinkhorn') throw new UsageError('--ot-reg is the Sinkhorn regulariser: it needs --ot-solver sinkhorn.');
  const shard = a.shard === undefined ? undefined : parseShard(a.shard as string, cellCount({ mode, groups: a.group_idxs as number[], sparsities }));
  if (shard && (a.epochs as number) > 0) throw new UsageError('--shard with --epochs: every shard would train (and write) the checkpoint; train it once in one run, then shard without --epochs.');
  return {
    onnxFile, modelName, checkpoint: a.checkpoint === undefined ? undefined : resolve(a.checkpoint as string),
    groups: a.group_idxs as number[], sparsities, groupSparsity, mode, criterion: a.importance_criteria as string,
    gpuId: a.gpu_id as number, epochs: a.epochs as number,
    data: a.data === undefined || a.data === 'none' ? (a.data as string | undefined) : resolve(a.data as string),
    dataFormat: a['data-format'] as DataFormat | undefined, dataDir: a['data-dir'] === undefined ? undefined : resolve(a['data-dir'] as string),
    calibrationData: a['calibration-data'] === undefined ? undefined : resolve(a['calibration-data'] as string),
    calibrationSamples: a['calibration-samples'] as number, resize,
    fineTuneEpochs: a['fine-tune-epochs'] as number, evalSamples: a['eval-samples'] as number | undefined,
    batchSize: a['batch-size'] as number, out: resolve(a.out as string),
    resume: a.resume === undefined ? undefined : resolve(a.resume as string), normalization: a.normalization as string | undefined, mean, std,
    otSolver: a['ot-solver'] as 'emd' | 'sinkhorn', otReg: a['ot-reg'] as number, otP: a['ot-p'] as number,
    targetProbability: a['target-probability'] as 'uniform' | 'importance', sourceProbability: a['source-probability'] as 'uniform' | 'importance',
    lampReferenceBug: a['lamp-reference-bug'] as boolean, referenceQuirks: a['reference-quirks'] as boolean, allowNonFinite: a['allow-non-finite'] as boolean, saveModels: a['save-models'] as boolean, seed: a.seed as number,
    fusion: a.fusion as Fusion, global, maxGroupSparsity, batchGroups: a['batch-groups'] as boolean,
    iterativeSteps: a['iterative-steps'] as number, roundTo: a['round-to'] as number,
    inputShape: inputShape as ExampleInput | undefined, exampleInput: (inputShape ?? [3, 32, 32]) as ExampleInput, exportOnnx: a['export-onnx'] as boolean, evalBackend: a['eval-backend'] as EvalBackend,
    shard,
  };
}
