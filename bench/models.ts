/**
 * Model benchmark: training images/s (forward, backward, SGD step) and eval images/s of VGG11-BN and
 * ResNet18 on random CIFAR-sized inputs, beside PyTorch CPU figures when a Python with torch is present.
 * Both sides time the same work (bench/torch_cpu.py): inputs made and placed on the device once, one
 * warm-up step, then `steps` steps timed until the device has finished them; no readback per step.
 */
import { spawnSync } from 'node:child_process';
import * as ag from '../src/tensor/autograd.js';
import { fromArray, getRuntime, tidy, type Tensor } from '../src/tensor/tensor.js';
import { inferenceSpeed } from '../src/nn/metrics.js';
import { createModel, MODEL_NAMES, type ModelName } from '../src/nn/models.js';
import { SGD } from '../src/nn/optim.js';

export interface ModelRow {
  model: string;
  trainBatch: number;
  trainImagesPerS: number;
  evalBatch: number;
  evalImagesPerS: number;
  latencyMs: number;
  torchTrainImagesPerS: number | null;
  torchEvalImagesPerS: number | null;
}

/** A random input batch on the GPU, made once outside the timed loop (as torch.randn is in torch_cpu.py). */
function randomBatch(batch: number): Tensor {
  return fromArray(new Float32Array(batch * 3072).map(() => Math.random() * 2 - 1), [batch, 3, 32, 32]).keep();
}

/** Times `steps` calls of `step` after one warm-up call (pipeline compilation), until the GPU is done. */
async function imagesPerSecond(batch: number, steps: number, step: () => void): Promise<number> {
  step();
  await getRuntime().sync();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  await getRuntime().sync();
  return (batch * steps) / ((performance.now() - t0) / 1e3);
}

async function trainSpeed(name: string, batch: number, steps: number): Promise<number> {
  const model = createModel(name as ModelName);
  model.train();
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
  const x = randomBatch(batch);
  const y = fromArray(Float32Array.from({ length: batch }, (_, i) => i % 10), [batch]).keep();
  const rate = await imagesPerSecond(batch, steps, () => {
    tidy(() => ag.backward(ag.crossEntropy(model.call(x), y)));
    opt.step();
    opt.zeroGrad();
  });
  for (const d of [x, y, opt, model]) d.dispose();
  return rate;
}

async function evalSpeed(name: string, batch: number, steps: number): Promise<number> {
  const model = createModel(name as ModelName);
  model.eval();
  const x = randomBatch(batch);
  const rate = await imagesPerSecond(batch, steps, () => ag.noGrad(() => tidy(() => void model.call(x))));
  x.dispose();
  model.dispose();
  return rate;
}

function torchFigures(trainBatch: number, evalBatch: number, steps: number): Record<string, { train_images_per_s: number; eval_images_per_s: number }> | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status !== 0) continue;
    const run = spawnSync(python, ['bench/torch_cpu.py', String(trainBatch), String(evalBatch), String(steps)], { encoding: 'utf8' });
    if (run.status === 0) return JSON.parse(run.stdout.trim().split('\n').pop()!);
    console.warn(`PyTorch CPU benchmark failed: ${run.stderr.trim().split('\n').pop()}`);
    return null;
  }
  console.warn('No Python with torch found (e.g. Debian python3-torch): PyTorch CPU figures omitted.');
  return null;
}

export async function benchModels(quick: boolean, log: (line: string) => void): Promise<ModelRow[]> {
  const trainBatch = 32;
  const evalBatch = quick ? 32 : 128;
  const steps = quick ? 2 : 20;
  const torch = torchFigures(trainBatch, evalBatch, steps);
  const rows: ModelRow[] = [];
  for (const name of MODEL_NAMES) {
    log(`benchmarking ${name} ...`);
    const train = await trainSpeed(name, trainBatch, steps);
    const evalRate = await evalSpeed(name, evalBatch, steps);
    // Latency is end to end for one image: upload, forward and readback (the median of 10).
    const model = createModel(name);
    const { latencyMs } = await inferenceSpeed(model, { batchSize: 1, reps: 5 });
    model.dispose();
    rows.push({
      model: name, trainBatch, trainImagesPerS: train, evalBatch, evalImagesPerS: evalRate, latencyMs,
      torchTrainImagesPerS: torch?.[name]?.train_images_per_s ?? null, torchEvalImagesPerS: torch?.[name]?.eval_images_per_s ?? null,
    });
  }
  return rows;
}
