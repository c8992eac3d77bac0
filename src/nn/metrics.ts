/**
 * Evaluation and model metrics: accuracy, parameter count, FLOPs, latency and throughput.
 *
 * FLOPs convention: FLOPs = 2 x MACs of the Conv2d and Linear layers for one 3x32x32 image (a
 * multiply-accumulate counts as two operations; bias adds, batch-norm, ReLU and pooling are not
 * counted). `macs` is reported too, since Torch-Pruning's counters (the reference) report MACs.
 */
import { noGrad } from '../tensor/autograd.js';
import { empty, fromArray, getRuntime, tidy, type Tensor } from '../tensor/tensor.js';
import type { Cifar10Split } from '../data/cifar10.js';
import { batches, cifar10Dataset, evaluationIndices, isDataset, type Dataset } from '../data/dataset.js';
import type { Normalization } from '../data/normalization.js';
import { ArgumentError, DataError } from '../errors.js';
import { layerKind } from './kinds.js';
import { addForwardHook, inputTaps, withResumePoint, type Module } from './module.js';

export interface EvalResult {
  /** Per-sample (top-1) accuracy in percent. */
  accuracy: number;
  /** Top-5 accuracy in percent; null for models with 5 classes or fewer (where it says nothing). */
  top5: number | null;
  /** Mean of per-batch accuracies in percent (the reference's `evaluate()`, spec section 5). */
  meanBatchAccuracy: number;
  loss: number;
  count: number;
  seconds: number;
}

export interface EvalOptions {
  /** Needed only when evaluating a CIFAR-10 split directly (a Dataset normalises its own samples). */
  normalization?: Normalization;
  batchSize?: number;
  /** Evaluate only `limit` samples (the first ones; spread over the classes for data sorted by class). */
  limit?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * Evaluate from activations kept at a module's input by keepInputs (same data, limit and batch size):
   * the work before it is skipped, the rest computed as usual, so results equal a whole evaluation when
   * the model computes what the kept one did up to there (src/nn/resume.ts says when).
   */
  resumeFrom?: KeptInputs;
  /** Also keep these modules' inputs while evaluating (for later resumeFrom), as keepInputs does. */
  keep?: Module[];
  /** The bound on kept activations, in bytes (default 2 GiB): a module that would pass it is dropped. */
  keepBytes?: number;
}

/** Activations kept at one module's input: one chunk per evaluation batch, and one sample's shape. */
export interface KeptInputs {
  module: Module;
  chunks: Float32Array[];
  sample: number[];
  batchSize: number;
  count: number;
}

/** The data as a Dataset: a CIFAR-10 split with the given normalisation, or the dataset itself. */
export function asDataset(data: Dataset | Cifar10Split, normalization?: Normalization): Dataset {
  if (isDataset(data)) return data;
  if (!normalization) throw new DataError('Evaluating a CIFAR-10 split needs its normalisation (or pass a Dataset).');
  return cifar10Dataset(data, normalization);
}

/** A batch's logits [n * classes] from its inputs (n samples of `shape`, concatenated): any backend's forward pass. */
export type LogitsFn = (x: Float32Array, shape: number[]) => Promise<Float32Array>;

/**
 * Runs the model in eval mode over a dataset (restoring its previous mode), whole or from `resumeFrom`;
 * with `keep`, the result also holds those modules' inputs (missing: over the memory bound or never reached).
 */
export async function evaluate(model: Module, data: Dataset | Cifar10Split, o: EvalOptions = {}): Promise<EvalResult & { kept?: Map<Module, KeptInputs> }> {
  const resume = o.resumeFrom;
  const ds = asDataset(data, o.normalization);
  const count = evaluationIndices(ds, o.limit).length;
  const batchSize = o.batchSize ?? 128;
  if (resume && o.keep?.length) throw new ArgumentError('evaluate: keep and resumeFrom cannot be combined (resumed models compute nothing before the resume point).');
  if (resume && (resume.batchSize !== batchSize || resume.count !== count)) {
    throw new DataError(`evaluate: activations kept for ${resume.count} samples in batches of ${resume.batchSize} cannot resume an evaluation of ${count} in batches of ${batchSize}.`);
  }
  const keeper = o.keep?.length ? inputKeeper(o.keep, batchSize, count, o.keepBytes) : undefined;
  const rt = getRuntime();
  let batch = 0;
  const wasTraining = model.training;
  model.eval();
  try {
    const result = await evaluateLogits(async (x, shape) => {
      keeper?.startBatch();
      const logits = await noGrad(() => tidy(() => {
        if (!resume) return model.call(fromArray(x, shape));
        // Nothing runs on the GPU until the resume point; there the kept chunk becomes the module's input.
        const input = fromArray(resume.chunks[batch++], [shape[0], ...resume.sample]);
        let reached = false;
        const y = rt.shapesOnly(() => withResumePoint(resume.module, input, () => { reached = true; rt.resumeDispatch(); }, () => model.call(empty(shape))));
        if (!reached) throw new DataError(`evaluate: the forward pass never reached the resume point ${resume.module.path || '(model)'}.`);
        return y;
      })).dataAndDispose();
      await keeper?.collect();
      return logits;
    }, ds, o);
    return keeper ? { ...result, kept: keeper.finish() } : result;
  } finally {
    keeper?.release();
    model.train(wasTraining);
  }
}

/**
 * Taps `modules`' inputs batch by batch into host chunks (keepInputs, evaluate's keep), within `limit` bytes
 * in all (default 2 GiB): a module that would pass it is dropped whole. `whenAllTaken` runs once every
 * module has its input in a batch.
 */
function inputKeeper(modules: Module[], batchSize: number, count: number, limit = 2 ** 31, whenAllTaken?: () => void) {
  const kept = new Map<Module, KeptInputs>(modules.map((m) => [m, { module: m, chunks: [], sample: [], batchSize, count }]));
  let bytes = 0;
  let taken: { m: Module; t: Tensor }[] = [];
  for (const m of modules) {
    inputTaps.set(m, (t) => {
      if (taken.some((k) => k.m === m)) return; // a module called twice: its first input
      taken.push({ m, t: t.keep() });
      if (taken.length === kept.size) whenAllTaken?.();
    });
  }
  const untap = () => { for (const m of modules) inputTaps.delete(m); };
  return {
    startBatch: () => { taken = []; },
    /** Reads this batch's taken inputs back to the host (and frees them on the GPU). */
    async collect() {
      while (taken.length) {
        const { m, t } = taken.shift()!;
        try {
          const k = kept.get(m);
          if (k && bytes + t.size * 4 <= limit) {
            k.chunks.push(await t.data());
            k.sample = t.shape.slice(1);
            bytes += t.size * 4;
          } else if (k) {
            // Over the memory bound: this module is dropped whole (its pruned models are evaluated whole).
            bytes -= k.chunks.reduce((b, c) => b + c.byteLength, 0);
            kept.delete(m);
            inputTaps.delete(m);
          }
        } finally {
          t.dispose();
        }
      }
    },
    /** Untaps and frees what a failed batch took but did not collect. */
    release() {
      untap();
      for (const { t } of taken.splice(0)) t.dispose();
    },
    /** The modules kept for every batch. */
    finish() {
      untap();
      for (const [m, k] of kept) if (k.chunks.length !== Math.ceil(count / batchSize)) kept.delete(m); // never reached
      return kept;
    },
  };
}

/**
 * Keeps `modules`' input activations over the evaluation data (batch by batch on the host, for evaluate's
 * resumeFrom; modules must be cuts, see resume.ts), without evaluating: GPU work stops once every module
 * has its input. A module whose activations would pass `keepBytes` (default 2 GiB) in all is dropped
 * (missing from the map).
 */
export async function keepInputs(model: Module, data: Dataset | Cifar10Split, modules: Module[], o: EvalOptions = {}): Promise<Map<Module, KeptInputs>> {
  const ds = asDataset(data, o.normalization);
  const indices = evaluationIndices(ds, o.limit);
  if (!indices.length) throw new DataError(`${ds.name} has no samples to evaluate.`);
  const batchSize = o.batchSize ?? 128;
  const rt = getRuntime();
  const keeper = inputKeeper(modules, batchSize, indices.length, o.keepBytes, () => rt.suspendDispatch()); // the rest of the forward pass is not needed
  const wasTraining = model.training;
  model.eval();
  let done = 0;
  try {
    for await (const { x, count: n } of batches(ds, { batchSize, indices })) {
      keeper.startBatch();
      noGrad(() => tidy(() => {
        const input = fromArray(x, [n, ...ds.shape]);
        rt.shapesOnly(() => {
          rt.resumeDispatch();
          model.call(input);
        });
      }));
      await keeper.collect();
      done += n;
      o.onProgress?.(done, indices.length);
    }
    return keeper.finish();
  } finally {
    keeper.release();
    model.train(wasTraining);
  }
}

/** Accuracy, top-5 and loss of any logits function over a dataset: evaluate()'s loop, for other backends too. */
export async function evaluateLogits(logitsOf: LogitsFn, data: Dataset | Cifar10Split, o: EvalOptions = {}): Promise<EvalResult> {
  const ds = asDataset(data, o.normalization);
  const indices = evaluationIndices(ds, o.limit);
  const count = indices.length;
  if (!count) throw new DataError(`${ds.name} has no samples to evaluate.`);
  const batchSize = o.batchSize ?? 128;
  const start = performance.now();
  let correct = 0;
  let correct5 = 0;
  let lossSum = 0;
  let batchAccSum = 0;
  let batchCount = 0;
  let done = 0;
  let classes = 0;
  for await (const { x, y, count: n } of batches(ds, { batchSize, indices })) {
    const values = await logitsOf(x, [n, ...ds.shape]);
    classes = values.length / n;
    let batchCorrect = 0;
    for (let i = 0; i < n; i++) {
      const label = y[i];
      if (!(label >= 0 && label < classes)) {
        throw new DataError(`${ds.name}: sample ${indices[done + i]} has label ${label}, outside the model's ${classes} classes (0..${classes - 1}).`);
      }
      const row = values.subarray(i * classes, (i + 1) * classes);
      // Rank of the true class: how many logits beat it (ties count for the earlier index, as argmax).
      let rank = 0;
      for (let c = 0; c < classes; c++) if (row[c] > row[label] || (row[c] === row[label] && c < label)) rank++;
      if (rank === 0) batchCorrect++;
      if (rank < 5) correct5++;
      // Cross-entropy on the CPU from the logits already read back.
      let m = -Infinity;
      for (let c = 0; c < classes; c++) m = Math.max(m, row[c]);
      let s = 0;
      for (let c = 0; c < classes; c++) s += Math.exp(row[c] - m);
      lossSum += m + Math.log(s) - row[label];
    }
    correct += batchCorrect;
    batchAccSum += batchCorrect / n;
    batchCount++;
    done += n;
    o.onProgress?.(done, count);
  }
  return {
    accuracy: (100 * correct) / count,
    top5: classes > 5 ? (100 * correct5) / count : null,
    meanBatchAccuracy: (100 * batchAccSum) / batchCount,
    loss: lossSum / count,
    count,
    seconds: (performance.now() - start) / 1e3,
  };
}

export interface Complexity {
  parameters: number;
  macs: number;
  flops: number;
}

/** Parameter count and FLOPs (2 x MACs, see above; MACs per layer kind from the pruner's registry) for one input. */
export function complexity(model: Module, inputShape: [number, number, number] = [3, 32, 32]): Complexity {
  let macs = 0;
  const remove = addForwardHook((m, _input, output) => {
    macs += layerKind(m)?.macs(m, output.shape) ?? 0;
  });
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => tidy(() => void model.call(fromArray(new Float32Array(inputShape.reduce((a, b) => a * b)), [1, ...inputShape]))));
  } finally {
    remove();
    model.train(wasTraining);
  }
  return { parameters: model.parameterCount(), macs, flops: 2 * macs };
}

export interface Speed {
  /** Median milliseconds for one forward pass of a single image (includes reading the logits back). */
  latencyMs: number;
  /** Images per second in batches of `batchSize`, forward only, eval mode. */
  throughput: number;
  batchSize: number;
}

/** Measures inference latency (batch 1) and throughput (larger batches) on random inputs. */
export async function inferenceSpeed(model: Module, { batchSize = 128, reps = 5, inputShape = [3, 32, 32] }: { batchSize?: number; reps?: number; inputShape?: [number, number, number] } = {}): Promise<Speed> {
  const wasTraining = model.training;
  model.eval();
  const per = inputShape.reduce((a, b) => a * b);
  const run = (n: number) => noGrad(() => tidy(() => model.call(fromArray(new Float32Array(n * per).map(() => Math.random()), [n, ...inputShape]))));
  const time = async (n: number, times: number) => {
    const samples: number[] = [];
    const warm = run(n);
    await warm.dataAndDispose();
    for (let i = 0; i < times; i++) {
      const t0 = performance.now();
      const out: Tensor = run(n);
      await out.dataAndDispose();
      samples.push(performance.now() - t0);
    }
    return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  };
  try {
    const latencyMs = await time(1, reps * 2);
    const batchMs = await time(batchSize, reps);
    await getRuntime().sync();
    return { latencyMs, throughput: (1000 * batchSize) / batchMs, batchSize };
  } finally {
    model.train(wasTraining);
  }
}
