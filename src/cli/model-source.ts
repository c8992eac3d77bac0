/**
 * Where run.js's model comes from: an ONNX file (--model), a safetensors checkpoint (--checkpoint, else
 * ./models/<name>.safetensors, else the one shipped in the package), or training one first (--epochs).
 * The result makes a fresh copy of the model for every pruned cell.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataError } from '../errors.js';
import { modelFromStateDict } from '../nn/checkpoint.js';
import { saveCheckpoint } from '../nn/checkpoint-node.js';
import type { Dataset } from '../data/dataset.js';
import { chooseNormalization, IMAGENET_STATS, parseNormalization, type Normalization } from '../data/normalization.js';
import { createModel, type ModelName } from '../nn/models.js';
import type { Module } from '../nn/module.js';
import { train } from '../nn/trainer.js';
import { loadOnnx } from '../onnx/node.js';
import { parseSafetensors } from '../tensor/safetensors.js';
import { UsageError } from './args.js';
import type { RunOptions } from './run-flags.js';

export interface ModelSource {
  /** A new copy of the model, as loaded (the caller disposes it). */
  fresh: () => Module;
  /** The input normalisation of the run (see runNormalization). */
  normalization: Normalization;
  /** The checkpoint or ONNX file, for errors. */
  file: string;
}

/**
 * What the run knows of the model before loading data: its input shape (an ONNX model's static one; sets
 * o.exampleInput) and the normalisation: --mean/--std or --normalization, else the model's own metadata,
 * else ImageNet's.
 */
export function describeModel(o: RunOptions): { normalization: Normalization; source: string } {
  let metadata: Record<string, string> = {};
  if (o.onnxFile) {
    const probe = loadOnnx(o.onnxFile, { allowNonFinite: o.allowNonFinite });
    probe.dispose();
    if (o.inputShape && o.inputShape.join() !== probe.inputShape.join()) {
      throw new UsageError(`--input-shape ${o.inputShape.join(' ')} does not match ${o.onnxFile}'s static input ${probe.inputShape.join('x')}.`);
    }
    o.exampleInput = [...probe.inputShape] as RunOptions['exampleInput'];
    metadata = probe.metadata;
  } else {
    const path = checkpointFor(o.modelName, o.checkpoint, o.epochs);
    try {
      if (existsSync(path)) metadata = parseSafetensors(readFileSync(path), path).metadata;
    } catch {
      // A broken checkpoint is reported when it is loaded (openModelSource), after the data.
    }
  }
  return chooseNormalization({
    preset: o.normalization, mean: o.mean, std: o.std, fallback: IMAGENET_STATS,
    model: parseNormalization(metadata.normalize_mean, metadata.normalize_std),
  });
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
  if (flag) return resolve(flag); // recorded in the results: compare.js may run elsewhere
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
  o: RunOptions, normalization: Normalization, data: { train: Dataset | null; test: Dataset | null }, log: (line: string) => void,
): Promise<ModelSource> {
  if (o.onnxFile) {
    const path = o.onnxFile;
    log(`model: ${path} (ONNX, input ${o.exampleInput.join('x')})`);
    return { fresh: () => loadOnnx(path, { allowNonFinite: o.allowNonFinite }), normalization, file: path };
  }
  const checkpointPath = checkpointFor(o.modelName, o.checkpoint, o.epochs);
  if (!existsSync(checkpointPath)) await trainCheckpoint(o, checkpointPath, normalization, data, log);
  log(`checkpoint: ${checkpointPath}`);
  const file = parseSafetensors(readFileSync(checkpointPath), checkpointPath);
  return { fresh: () => modelFromStateDict(o.modelName, file, checkpointPath, { allowNonFinite: o.allowNonFinite }), normalization, file: checkpointPath };
}

/** No checkpoint yet: train one for --epochs epochs (resumable) and save it where it was looked for. */
async function trainCheckpoint(
  o: RunOptions, checkpointPath: string, normalization: Normalization, data: { train: Dataset | null; test: Dataset | null }, log: (line: string) => void,
): Promise<void> {
  if (!o.epochs) throw new UsageError(`Checkpoint ${checkpointPath} does not exist: pass --checkpoint FILE, or --epochs N to train one first.`);
  if (!data.train) throw new UsageError(`--epochs ${o.epochs}: training needs data; pass --data DIR|FILE.`);
  log(`no checkpoint at ${checkpointPath}: training ${o.modelName} for ${o.epochs} epochs`);
  const model = createModel(o.modelName as ModelName, { numClasses: data.train.classes?.length ?? 10 });
  await train(model, data.train, {
    epochs: o.epochs, lr: 0.05, momentum: 0.9, weightDecay: 5e-4, schedule: 'step', stepSize: 30, gamma: 0.5, batchSize: o.batchSize,
    normalization, seed: o.seed, checkpointDir: join(o.out, 'training', o.modelName), resume: true, test: data.test ?? undefined, log,
    metadata: { model: o.modelName },
  });
  await saveCheckpoint(model, checkpointPath, {
    model: o.modelName, epochs: String(o.epochs), normalize_mean: normalization.mean.join(','), normalize_std: normalization.std.join(','),
  });
  model.dispose();
  log(`saved ${checkpointPath}`);
}
