/**
 * run.js's data: the evaluation set (--data, or CIFAR-10 from --data-dir) and the calibration set that taylor,
 * chip and fine-tuning draw from (--calibration-data; CIFAR-10's training split; else the evaluation set).
 * A run without data (--data none, or an ONNX model with no --data) prunes and exports without evaluating.
 */
import { DataError } from '../errors.js';
import { loadCifar10 } from '../data/cifar10-node.js';
import { cifar10Dataset, evaluationSubset, type Dataset } from '../data/dataset.js';
import { openDataset, type DataFormat } from '../data/node.js';
import { formatNormalization, type Normalization } from '../data/normalization.js';
import { defaultResize, type EvalTransform } from '../data/transforms.js';
import { UsageError } from './args.js';
import { ProgressBar } from './progress.js';
import type { RunOptions } from './run-flags.js';

export interface RunData {
  /** The evaluation set (at most --eval-samples), or null for a data-free run. */
  test: Dataset | null;
  /** taylor/chip calibration and fine-tuning data, or null. */
  calibration: Dataset | null;
  /** For the results JSON. */
  path: string | null;
  format: DataFormat | null;
}

export const DATA_FREE_CRITERIA = ['l1', 'l2', 'lamp', 'random'];

/** Where the run's data comes from: a --data path, CIFAR-10 in a folder (downloaded when missing), or nothing. */
export function dataPlan(o: RunOptions): { kind: 'none' } | { kind: 'path'; path: string } | { kind: 'cifar-download'; dir: string } {
  if (o.data === 'none') return { kind: 'none' };
  if (o.data) return { kind: 'path', path: o.data };
  if (o.dataDir) return { kind: 'cifar-download', dir: o.dataDir };
  return o.onnxFile ? { kind: 'none' } : { kind: 'cifar-download', dir: `${process.cwd()}/data/cifar10` };
}

/** Checks that need only the flags: taylor/chip need calibration data. */
export function checkDataFlags(o: RunOptions): void {
  const plan = dataPlan(o);
  const needsData = o.criterion === 'taylor' || o.criterion === 'chip';
  if (plan.kind === 'none' && needsData && !o.calibrationData) {
    throw new UsageError(`--importance_criteria ${o.criterion} needs calibration data: pass --data DIR|FILE (or --calibration-data), or use a data-free criterion (${DATA_FREE_CRITERIA.join(', ')}).`);
  }
  if (o.dataFormat && plan.kind !== 'path') throw new UsageError('--data-format says what --data is: give --data DIR|FILE too (CIFAR-10 from --data-dir needs no format).');
  if (plan.kind === 'none' && o.fineTuneEpochs > 0 && !o.calibrationData) throw new UsageError('--fine-tune-epochs needs training data: pass --data DIR|FILE or --calibration-data.');
}

export async function openRunData(o: RunOptions, normalization: Normalization, log: (line: string) => void): Promise<RunData> {
  const [C, H, W] = o.exampleInput;
  const transform: EvalTransform = { resize: o.resize === undefined ? defaultResize([H, W]) : o.resize, crop: [H, W], channels: C, normalization };
  const open = async (path: string, format: DataFormat | undefined, split: 'train' | 'test') => {
    const r = await openDataset(path, { format, transform, normalization, split });
    if (r.skipped.length) log(`data: skipped ${r.skipped.length} file${r.skipped.length > 1 ? 's' : ''} that are not images (.jpg .jpeg .png .webp) in ${path}, e.g. ${r.skipped[0]}`);
    return r;
  };
  const plan = dataPlan(o);
  let test: Dataset | null = null;
  let calibration: Dataset | null = null;
  let format: DataFormat | null = null;
  let path: string | null = null;
  if (plan.kind === 'cifar-download') {
    const data = await loadCifar10(plan.dir, {
      url: process.env.INTRA_FUSION_CIFAR10_URL, // a mirror of the official archive (same MD5), when set
      onProgress: (() => {
        let bar: ProgressBar | null = null;
        return (r: number, total: number) => (bar ??= new ProgressBar('downloading CIFAR-10 (bytes)', total || 170_052_171)).update(r);
      })(),
    }).catch((e: unknown) => {
      if (!(e instanceof DataError)) throw e;
      throw new DataError(`${e.message} If you have CIFAR-10 elsewhere, pass --data-dir DIR (the folder with data_batch_1.bin ... test_batch.bin, or its cifar-10-batches-bin/).`);
    });
    test = cifar10Dataset(data.test, normalization, `CIFAR-10 test (${data.dir})`);
    calibration = cifar10Dataset(data.train, normalization, `CIFAR-10 train (${data.dir})`);
    [format, path] = ['cifar10', data.dir];
  } else if (plan.kind === 'path') {
    const r = await open(plan.path, o.dataFormat, 'test');
    test = r.dataset;
    [format, path] = [r.format, plan.path];
    // CIFAR-10 calibrates on its training split, as the reference; anything else on itself.
    calibration = r.format === 'cifar10' ? (await open(plan.path, 'cifar10', 'train')).dataset : test;
  }
  let calibrationFormat: DataFormat | null = null;
  if (o.calibrationData) ({ dataset: calibration, format: calibrationFormat } = await open(o.calibrationData, undefined, 'train'));
  if (o.resize !== undefined && format !== 'imagefolder' && calibrationFormat !== 'imagefolder') {
    throw new UsageError(`--resize applies to image folders; ${format ?? 'no'} data is used at its own size: leave --resize out.`);
  }
  for (const d of [test, calibration]) {
    if (d && d.shape.join() !== o.exampleInput.join()) {
      throw new DataError(`${d.name} has samples of ${d.shape.join('x')}, but the model's input is ${o.exampleInput.join('x')}: pass --input-shape ${d.shape.join(' ')} or data of the model's size.`);
    }
  }
  if (test) {
    if (o.evalSamples && o.evalSamples < test.count) test = evaluationSubset(test, o.evalSamples);
    log(`data: ${format} ${test.name}, ${test.count} samples of ${test.shape.join('x')}${test.classes ? `, ${test.classes.length} classes` : ''}; ${formatNormalization(normalization)}${format === 'imagefolder' ? `; resize ${transform.resize ?? 'none'}, centre crop ${H}x${W}` : ''}`);
  } else {
    log('data: none: pruning and exporting without evaluation (accuracy null in the results); pass --data DIR|FILE to evaluate');
  }
  if (calibration && calibration !== test && (o.criterion === 'taylor' || o.criterion === 'chip')) log(`calibration: ${calibration.name}, ${Math.min(o.calibrationSamples, calibration.count)} samples`);
  return { test, calibration, path, format };
}

/** The model's class count against the data's: class folders or CIFAR-10's classes must match its outputs. */
export function checkClassCount(data: RunData, outputs: number): void {
  for (const d of [data.test, data.calibration]) {
    if (d?.classes && d.classes.length !== outputs) {
      throw new DataError(`${d.name} has ${d.classes.length} classes (${d.classes.slice(0, 5).join(', ')}${d.classes.length > 5 ? ', ...' : ''}) but the model has ${outputs} outputs: the class folders must match the model's classes, one sub-folder per output, in sorted order.`);
    }
  }
}
