/**
 * Training on a dataset (a CIFAR-10 split or any Dataset) with SGD (momentum / Nesterov, weight decay) and a learning-rate schedule.
 *
 * After every epoch it writes a checkpoint into `checkpointDir`: the model (`epoch-NNN.safetensors`,
 * PyTorch names), the optimiser's momentum buffers (`epoch-NNN.optim.safetensors`) and, last and
 * atomically, `state.json` naming both. A run interrupted at any point resumes from the last complete
 * epoch. Shuffling and augmentation draw from a generator seeded per epoch, and every kernel is
 * deterministic, so a resumed run continues exactly as an uninterrupted one would have.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ew from '../kernels/elementwise.js';
import * as ag from '../tensor/autograd.js';
import { ArgumentError, DataError } from '../errors.js';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from '../tensor/safetensors.js';
import { fromArray, getRuntime, tidy, type Tensor } from '../tensor/tensor.js';
import { loadCheckpoint, saveCheckpoint, writeFileAtomic } from './checkpoint-node.js';
import { batchIndices, order, type Cifar10Split } from '../data/cifar10.js';
import type { Dataset } from '../data/dataset.js';
import type { Normalization } from '../data/normalization.js';
import { seededRandom } from './init.js';
import { asDataset, evaluate } from './metrics.js';
import type { Module } from './module.js';
import { SGD } from './optim.js';

export type Schedule = 'constant' | 'step' | 'cosine' | 'onecycle';
export const SCHEDULES: Schedule[] = ['constant', 'step', 'cosine', 'onecycle'];

export interface TrainOptions {
  epochs: number;
  /** Base learning rate (the peak for one-cycle). */
  lr: number;
  batchSize?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  /**
   * constant; step: lr * gamma^floor(epoch / stepSize) (the reference: 0.5 every 30 epochs);
   * cosine: per-step cosine decay to 0; onecycle: per step, cosine warm-up from lr/25 over the first 30%
   * of steps, then cosine annealing to lr/25/1e4 (PyTorch OneCycleLR's defaults, without momentum cycling).
   */
  schedule?: Schedule;
  stepSize?: number;
  gamma?: number;
  /** The input normalisation: applied to a CIFAR-10 split, and recorded in checkpoints (a Dataset normalises its own samples). */
  normalization?: Normalization;
  /** The dataset's training augmentation (CIFAR-10: flip and padded crop); default true. */
  augment?: boolean;
  seed?: number;
  /** Write a checkpoint after every epoch here. */
  checkpointDir?: string;
  /** Continue from `checkpointDir/state.json` when it exists. */
  resume?: boolean;
  /** Evaluate on this split or dataset after every epoch. */
  test?: Cifar10Split | Dataset;
  evalLimit?: number;
  /** Extra checkpoint metadata (model name, ...). */
  metadata?: Record<string, string>;
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
  /** Progress lines per epoch (default 10). */
  logsPerEpoch?: number;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  lr: number;
  seconds: number;
  imagesPerSecond: number;
  testAccuracy?: number;
}

interface SavedState {
  epoch: number;
  model: string;
  optimizer: string;
  history: EpochRecord[];
}

/** The learning rate of the schedule at an epoch and step. */
export function learningRate(o: TrainOptions, epoch: number, step: number, stepsPerEpoch: number): number {
  const t = (epoch * stepsPerEpoch + step) / Math.max(1, o.epochs * stepsPerEpoch);
  switch (o.schedule ?? 'step') {
    case 'constant':
      return o.lr;
    case 'step':
      return o.lr * (o.gamma ?? 0.5) ** Math.floor(epoch / (o.stepSize ?? 30));
    case 'cosine':
      return 0.5 * o.lr * (1 + Math.cos(Math.PI * t));
    case 'onecycle': {
      const start = o.lr / 25;
      const end = start / 1e4;
      const warm = 0.3;
      const cos = (a: number, b: number, f: number) => b + ((a - b) * (1 + Math.cos(Math.PI * f))) / 2;
      return t < warm ? cos(start, o.lr, t / warm) : cos(o.lr, end, (t - warm) / (1 - warm));
    }
    default:
      throw new ArgumentError(`Unknown schedule "${o.schedule}"; choose one of ${SCHEDULES.join(', ')}.`);
  }
}

function validate(o: TrainOptions): void {
  const bad = (what: string) => {
    throw new ArgumentError(`train: ${what}`);
  };
  if (!(Number.isInteger(o.epochs) && o.epochs >= 1)) bad(`epochs must be a positive integer, got ${o.epochs}.`);
  if (!(o.lr > 0)) bad(`lr must be positive, got ${o.lr}.`);
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize >= 2)) bad(`batch size must be an integer >= 2 (batch-norm needs 2), got ${o.batchSize}.`);
  if (o.schedule && !SCHEDULES.includes(o.schedule)) bad(`unknown schedule "${o.schedule}"; choose one of ${SCHEDULES.join(', ')}.`);
  if (o.resume && !o.checkpointDir) bad('resume needs a checkpoint directory.');
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

async function saveEpoch(model: Module, opt: SGD, o: TrainOptions, epoch: number, history: EpochRecord[]): Promise<void> {
  const dir = o.checkpointDir!;
  const tag = `epoch-${String(epoch + 1).padStart(3, '0')}`;
  const last = history[history.length - 1];
  await saveCheckpoint(model, join(dir, `${tag}.safetensors`), {
    ...o.metadata,
    epoch: String(epoch + 1),
    train_loss: String(last.loss),
    ...(last.testAccuracy !== undefined ? { test_accuracy: last.testAccuracy.toFixed(2) } : {}),
    ...(o.normalization ? { normalize_mean: o.normalization.mean.join(','), normalize_std: o.normalization.std.join(',') } : {}),
  });
  const momentum = new Map<string, TensorToWrite>();
  for (const [name, p] of model.namedParameters()) {
    const buf = opt.momentumOf(p);
    if (buf) momentum.set(name, { shape: [...p.shape], values: await buf.data() });
  }
  writeFileAtomic(join(dir, `${tag}.optim.safetensors`), serializeSafetensors(momentum, { epoch: String(epoch + 1) }));
  const previous = existsSync(join(dir, 'state.json')) ? (JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as SavedState) : null;
  const state: SavedState = { epoch: epoch + 1, model: `${tag}.safetensors`, optimizer: `${tag}.optim.safetensors`, history };
  writeFileAtomic(join(dir, 'state.json'), JSON.stringify(state, null, 2));
  // Only the newest optimiser state is needed to resume; every epoch's model is kept.
  if (previous && previous.optimizer !== state.optimizer) rmSync(join(dir, previous.optimizer), { force: true });
}

function restore(model: Module, opt: SGD, dir: string): SavedState | null {
  const file = join(dir, 'state.json');
  if (!existsSync(file)) return null;
  const state = JSON.parse(readFileSync(file, 'utf8')) as SavedState;
  loadCheckpoint(model, join(dir, state.model));
  const optimFile = join(dir, state.optimizer);
  if (!existsSync(optimFile)) throw new DataError(`Cannot resume: ${optimFile} (named in ${file}) is missing.`);
  const momentum = parseSafetensors(readFileSync(optimFile), optimFile).tensors;
  for (const [name, p] of model.namedParameters()) {
    const m = momentum.get(name);
    if (m) opt.setMomentum(p, m.values);
  }
  return state;
}

/** Trains `model` in place; returns the per-epoch history (including epochs restored from a checkpoint). */
export async function train(model: Module, data: Cifar10Split | Dataset, o: TrainOptions): Promise<EpochRecord[]> {
  validate(o);
  const ds = asDataset(data, o.normalization);
  const log = o.log ?? ((line: string) => console.log(line));
  const batchSize = o.batchSize ?? 128;
  const seed = o.seed ?? 0;
  const opt = new SGD(model.parameters(), {
    lr: o.lr, momentum: o.momentum ?? 0.9, nesterov: o.nesterov ?? false, weightDecay: o.weightDecay ?? 5e-4,
  });
  let history: EpochRecord[] = [];
  let firstEpoch = 0;
  if (o.resume) {
    const state = restore(model, opt, o.checkpointDir!);
    if (state) {
      firstEpoch = state.epoch;
      history = state.history;
      log(`resumed from ${join(o.checkpointDir!, state.model)} after epoch ${state.epoch}`);
    }
  }
  // Drop the last batch when it would leave batch-norm a single image.
  const usable = ds.count % batchSize === 1 ? ds.count - 1 : ds.count;
  const stepsPerEpoch = Math.ceil(usable / batchSize);
  const logEvery = Math.max(1, Math.floor(stepsPerEpoch / (o.logsPerEpoch ?? 10)));
  const rt = getRuntime();
  try {
    for (let epoch = firstEpoch; epoch < o.epochs; epoch++) {
      model.train();
      const random = seededRandom(seed * 1_000_003 + epoch);
      const idx = order(ds.count, true, random).subarray(0, usable);
      const start = performance.now();
      let lossSum: Tensor = fromArray([0], [1]).keep();
      let seen = 0;
      let step = 0;
      let lr = o.lr;
      for (const batch of batchIndices(idx, batchSize)) {
        lr = opt.lr = learningRate(o, epoch, step, stepsPerEpoch);
        const { x, y } = await ds.batch(batch, { augment: o.augment ?? true, random });
        const next = tidy(() => {
          const loss = ag.crossEntropy(model.call(fromArray(x, [batch.length, ...ds.shape])), y); // labels checked against the classes
          ag.backward(loss);
          return ew.axpby(1, lossSum, batch.length, loss).keep();
        });
        lossSum.dispose();
        lossSum = next;
        opt.step();
        opt.zeroGrad();
        seen += batch.length;
        step++;
        if (step % logEvery === 0 || step === stepsPerEpoch) {
          const loss = (await lossSum.data())[0] / seen;
          const elapsed = (performance.now() - start) / 1e3;
          const rate = seen / elapsed;
          log(`epoch ${epoch + 1}/${o.epochs} step ${step}/${stepsPerEpoch} loss ${loss.toFixed(4)} lr ${lr.toPrecision(3)} ` +
            `${rate.toFixed(1)} img/s ETA ${formatSeconds((usable - seen) / rate)}`);
        }
      }
      const loss = (await lossSum.dataAndDispose())[0] / seen;
      await rt.sync();
      const seconds = (performance.now() - start) / 1e3;
      const record: EpochRecord = { epoch: epoch + 1, loss, lr, seconds, imagesPerSecond: seen / seconds };
      if (o.test) {
        const r = await evaluate(model, o.test, { normalization: o.normalization, limit: o.evalLimit });
        record.testAccuracy = r.accuracy;
        log(`epoch ${epoch + 1}: test accuracy ${r.accuracy.toFixed(2)}% on ${r.count} images`);
      }
      history.push(record);
      if (o.checkpointDir) await saveEpoch(model, opt, o, epoch, history);
    }
  } finally {
    opt.dispose();
  }
  return history;
}
