/**
 * Evaluation and model metrics: accuracy, parameter count, FLOPs, latency and throughput.
 *
 * FLOPs convention: FLOPs = 2 x MACs of the Conv2d and Linear layers for one 3x32x32 image (a
 * multiply-accumulate counts as two operations; bias adds, batch-norm, ReLU and pooling are not
 * counted). `macs` is reported too, since Torch-Pruning's counters (the reference) report MACs.
 */
import { noGrad } from '../tensor/autograd.js';
import { fromArray, getRuntime, tidy, type Tensor } from '../tensor/tensor.js';
import { batchIndices, makeBatch, order, type Cifar10Split, type Normalization } from './cifar10.js';
import { layerKind } from './kinds.js';
import { addForwardHook, type Module } from './module.js';

export interface EvalResult {
  /** Per-sample accuracy in percent. */
  accuracy: number;
  /** Mean of per-batch accuracies in percent (the reference's `evaluate()`, spec section 5). */
  meanBatchAccuracy: number;
  loss: number;
  count: number;
  seconds: number;
}

export interface EvalOptions {
  normalization: Normalization;
  batchSize?: number;
  /** Evaluate only the first `limit` images (fast subset mode). */
  limit?: number;
  onProgress?: (done: number, total: number) => void;
}

function argmaxRows(logits: Float32Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (logits[r * cols + c] > logits[r * cols + best]) best = c;
    out[r] = best;
  }
  return out;
}

/** Runs the model in eval mode over a split (restoring its previous mode). */
export async function evaluate(model: Module, split: Cifar10Split, o: EvalOptions): Promise<EvalResult> {
  const count = Math.min(o.limit ?? split.count, split.count);
  const batchSize = o.batchSize ?? 128;
  const wasTraining = model.training;
  model.eval();
  const start = performance.now();
  let correct = 0;
  let lossSum = 0;
  let batchAccSum = 0;
  let batches = 0;
  let done = 0;
  try {
    for (const idx of batchIndices(order(count, false), batchSize)) {
      const { x, y } = makeBatch(split, idx, { normalization: o.normalization });
      const logits = noGrad(() => tidy(() => model.call(fromArray(x, [idx.length, 3, 32, 32]))));
      const values = await logits.dataAndDispose();
      const classes = values.length / idx.length;
      const pred = argmaxRows(values, idx.length, classes);
      let batchCorrect = 0;
      for (let i = 0; i < idx.length; i++) {
        if (pred[i] === y[i]) batchCorrect++;
        // Cross-entropy on the CPU from the logits already read back.
        let m = -Infinity;
        for (let c = 0; c < classes; c++) m = Math.max(m, values[i * classes + c]);
        let s = 0;
        for (let c = 0; c < classes; c++) s += Math.exp(values[i * classes + c] - m);
        lossSum += m + Math.log(s) - values[i * classes + y[i]];
      }
      correct += batchCorrect;
      batchAccSum += batchCorrect / idx.length;
      batches++;
      done += idx.length;
      o.onProgress?.(done, count);
    }
  } finally {
    model.train(wasTraining);
  }
  return {
    accuracy: (100 * correct) / count,
    meanBatchAccuracy: (100 * batchAccSum) / batches,
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
export function complexity(model: Module, imageShape: [number, number, number] = [3, 32, 32]): Complexity {
  let macs = 0;
  const remove = addForwardHook((m, _input, output) => {
    macs += layerKind(m)?.macs(m, output.shape) ?? 0;
  });
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => tidy(() => void model.call(fromArray(new Float32Array(imageShape.reduce((a, b) => a * b)), [1, ...imageShape]))));
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
