/**
 * Where run.js's model comes from: an ONNX file (--model), a safetensors checkpoint (--checkpoint, else
 * ./models/<name>.safetensors, else the one shipped in the package), or training one first (--epochs).
 * The result makes a fresh copy of the model for every pruned cell.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataError } from '../errors.js';
import { modelFromStateDict } from '../nn/checkpoint.js';
import { saveCheckpoint } from '../nn/checkpoint-node.js';
import { CIFAR10_STATS, IMAGENET_STATS, parseNormalization, type Cifar10Split, type Normalization } from '../nn/cifar10.js';
import { createModel } from '../nn/models.js';
import type { Module } from '../nn/module.js';
import { train } from '../nn/trainer.js';
import { loadOnnx } from '../onnx/node.js';
import { parseSafetensors } from '../tensor/safetensors.js';
import { UsageError } from './args.js';
import type { RunOptions } from './run-flags.js';

export interface ModelSource {
  /** A new copy of the model, as loaded (the caller disposes it). */
  fresh: () => Module;
  /** The input normalisation the file names, else the one --normalization picks. */
  normalization: Normalization;
}

/** Checkpoints shipped in the package's models/ folder, by model name. */
const SHIPPED_CHECKPOINTS: Record<string, string> = { vgg11_bn: 'vgg11_bn_cifar10.fp16.safetensors' };

/**
 * A file in the package's models/ folder: found by walking up from this module, which sits in dist/ when
 * bundled and in src/cli/ when run from source.
 */
function shippedFile(name: string): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 3; up++, dir = dirname(dir)) {
    const path = join(dir, 'models', name);
    if (existsSync(path)) return path;
  }
  return null;
}

/**
 * The checkpoint to use: --checkpoint, else ./models/<model-name>.safetensors when it exists (or when
 * --epochs will train it), else the shipped one, so the first run needs no flag.
 */
export function checkpointFor(modelName: string, flag: string | undefined, epochs: number): string {
  if (flag) return flag;
  const local = join(process.cwd(), 'models', `${modelName}.safetensors`);
  const shipped = SHIPPED_CHECKPOINTS[modelName] ? shippedFile(SHIPPED_CHECKPOINTS[modelName]) : null;
  return existsSync(local) || epochs > 0 || !shipped ? local : shipped;
}

/** Before any long work: the files the model comes from exist (or --epochs will train the checkpoint). */
export function checkModelFiles(o: RunOptions): void {
  if (o.onnxFile) {
    if (!existsSync(o.onnxFile)) throw new DataError(`ONNX model not found: ${o.onnxFile} (--model).`);
    return;
  }
  const checkpointPath = checkpointFor(o.modelName, o.checkpoint, o.epochs);
  if (!existsSync(checkpointPath) && !o.epochs) throw new UsageError(`Checkpoint ${checkpointPath} does not exist: pass --checkpoint FILE, or --epochs N to train one first.`);
}

/** The model of the run: loaded from --model or the checkpoint, trained first when --epochs asks for it. */
export async function openModelSource(
  o: RunOptions, data: { train: Cifar10Split; test: Cifar10Split }, log: (line: string) => void,
): Promise<ModelSource> {
  const normalization: Normalization = o.normalization === 'cifar10' ? CIFAR10_STATS : IMAGENET_STATS;
  if (o.onnxFile) {
    const onnx = onnxSource(o.onnxFile, o.allowNonFinite);
    return { fresh: onnx.fresh, normalization: onnx.normalization ?? normalization };
  }
  const checkpointPath = checkpointFor(o.modelName, o.checkpoint, o.epochs);
  if (!existsSync(checkpointPath)) await trainCheckpoint(o, checkpointPath, normalization, data, log);
  log(`checkpoint: ${checkpointPath}`);
  const file = parseSafetensors(readFileSync(checkpointPath), checkpointPath);
  return {
    fresh: () => modelFromStateDict(o.modelName, file, checkpointPath, { allowNonFinite: o.allowNonFinite }),
    normalization: parseNormalization(file.metadata.normalize_mean, file.metadata.normalize_std) ?? normalization,
  };
}

/** No checkpoint yet: train one for --epochs epochs (resumable) and save it where it was looked for. */
async function trainCheckpoint(
  o: RunOptions, checkpointPath: string, normalization: Normalization, data: { train: Cifar10Split; test: Cifar10Split }, log: (line: string) => void,
): Promise<void> {
  if (!o.epochs) throw new UsageError(`Checkpoint ${checkpointPath} does not exist: pass --checkpoint FILE, or --epochs N to train one first.`);
  log(`no checkpoint at ${checkpointPath}: training ${o.modelName} for ${o.epochs} epochs`);
  const model = createModel(o.modelName);
  await train(model, data.train, {
    epochs: o.epochs, lr: 0.05, momentum: 0.9, weightDecay: 5e-4, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize: o.batchSize,
    normalization, seed: o.seed, checkpointDir: join(o.out, 'training', o.modelName), resume: true, test: data.test, log,
    metadata: { model: o.modelName },
  });
  await saveCheckpoint(model, checkpointPath, {
    model: o.modelName, epochs: String(o.epochs), normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','),
  });
  model.dispose();
  log(`saved ${checkpointPath}`);
}

/** An ONNX model as the run's model: imported afresh for every cell, with the normalisation it names. */
function onnxSource(path: string, allowNonFinite: boolean): { fresh: () => Module; normalization: Normalization | null } {
  const probe = loadOnnx(path, { allowNonFinite });
  probe.dispose();
  // The pruner traces and the metrics count on CIFAR-10-sized images.
  if (probe.inputShape.join() !== '3,32,32') throw new UsageError(`--model ${path}: its input is ${probe.inputShape.join('x')}; this run prunes and evaluates 3x32x32 (CIFAR-10) models.`);
  return { fresh: () => loadOnnx(path, { allowNonFinite }), normalization: parseNormalization(probe.metadata.normalize_mean, probe.metadata.normalize_std) };
}
