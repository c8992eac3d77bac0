/** The calibration batches taylor and chip draw, and the options every importance criterion takes. */
import { ArgumentError } from '../errors.js';
import type { Prunable } from '../nn/kinds.js';
import { batchIndices, order, type Cifar10Split } from '../data/cifar10.js';
import { cifar10Dataset, isDataset, type Dataset } from '../data/dataset.js';
import type { Normalization } from '../data/normalization.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';
import type { ExampleInput } from '../graph/trace.js';

/** Calibration data for taylor and chip: any Dataset, or a CIFAR-10 split with its normalisation. */
export type ImportanceData = Dataset | { train: Cifar10Split; normalization: Normalization };

const calibrationDataset = (d: ImportanceData): Dataset => (isDataset(d) ? d : cifar10Dataset(d.train, d.normalization, 'CIFAR-10 train'));

export interface ImportanceOptions {
  /** Calibration data, needed by taylor and chip. */
  data?: ImportanceData;
  /** Batches for taylor and chip (reference: 5) and their size (reference: 128). */
  batches?: number;
  batchSize?: number;
  /** Calibration samples in all (default batches x batchSize, capped by the data): overrides `batches`. */
  samples?: number;
  random?: () => number;
  lampReferencePermutation?: boolean;
  /** The model's input shape; taylor and chip check that the calibration data has it. */
  inputShape?: ExampleInput;
  /** taylor: gradients already accumulated for the group's layers (prune() shares them across a batch of groups). */
  gradients?: Map<Prunable, Float32Array>;
}

export /**
 * The calibration batches: the first `samples` (default `batches` (reference: 5) x `batchSize` (reference: 128))
 * of a shuffled order, with the dataset's training augmentation (CIFAR-10's flip and crop, as the reference).
 */
async function* calibrationBatches(data: ImportanceData, o: ImportanceOptions): AsyncGenerator<{ x: Tensor; y: Float32Array; count: number }> {
  const ds = calibrationDataset(data);
  const shape = o.inputShape ?? [3, 32, 32];
  if (ds.shape.join() !== shape.join()) {
    throw new ArgumentError(`taylor and chip: the calibration data ${ds.name} has samples of ${ds.shape.join('x')}, but the model's input is ${shape.join('x')}.`);
  }
  const batchSize = o.batchSize ?? 128;
  const samples = Math.min(o.samples ?? (o.batches ?? 5) * batchSize, ds.count);
  if (!(samples >= 1)) throw new ArgumentError(`taylor and chip need at least one calibration sample, got ${samples}.`);
  const random = o.random ?? Math.random;
  for (const idx of batchIndices(order(ds.count, true, random).subarray(0, samples), batchSize)) {
    const { x, y } = await ds.batch(idx, { augment: true, random });
    yield { x: fromArray(x, [idx.length, ...ds.shape]), y, count: idx.length };
  }
}
