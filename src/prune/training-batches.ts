/** The training batches taylor and chip draw, and the options every importance criterion takes. */
import { ArgumentError } from '../errors.js';
import type { Prunable } from '../nn/kinds.js';
import { batchIndices, makeBatch, order, type Cifar10Split, type Normalization } from '../nn/cifar10.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';
import type { ExampleInput } from '../graph/trace.js';

export interface ImportanceData {
  train: Cifar10Split;
  normalization: Normalization;
}

export interface ImportanceOptions {
  /** Training data, needed by taylor and chip. */
  data?: ImportanceData;
  /** Batches for taylor and chip (reference: 5) and their size (reference: 128). */
  batches?: number;
  batchSize?: number;
  random?: () => number;
  lampReferencePermutation?: boolean;
  /** The model's input shape; taylor and chip draw CIFAR-10 batches, so it must be [3, 32, 32] for them. */
  exampleInput?: ExampleInput;
  /** taylor: gradients already accumulated for the group's layers (prune() shares them across a batch of groups). */
  gradients?: Map<Prunable, Float32Array>;
}

export /** The first `batches` (reference: 5) shuffled, augmented training batches of `batchSize` (reference: 128). */
function* trainingBatches(data: ImportanceData, o: ImportanceOptions): Generator<{ x: Tensor; y: Float32Array; count: number }> {
  const shape = o.exampleInput ?? [3, 32, 32];
  if (shape.join() !== '3,32,32') {
    throw new ArgumentError(`taylor and chip draw CIFAR-10 batches (3x32x32 images), but the model's exampleInput is [${shape}].`);
  }
  const random = o.random ?? Math.random;
  let drawn = 0;
  for (const idx of batchIndices(order(data.train.count, true, random), o.batchSize ?? 128)) {
    if (drawn++ >= (o.batches ?? 5)) return;
    const { x, y } = makeBatch(data.train, idx, { normalization: data.normalization, augment: true, random });
    yield { x: fromArray(x, [idx.length, 3, 32, 32]), y, count: idx.length };
  }
}
