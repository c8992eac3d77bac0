/**
 * Model benchmark: training images/s (forward, backward, SGD step) and eval images/s of VGG11-BN and
 * ResNet18 on random CIFAR-sized inputs, beside what a user may already have on the CPU: PyTorch (when a
 * Python with torch is present) and onnxruntime-node running the same model exported to ONNX by this
 * package (when the optional peer dependency is installed). All time the same work (bench/torch_cpu.py):
 * inputs made and placed once, one warm-up step, then `steps` steps timed until the device has finished.
 * Our GPU steps read nothing back; an onnxruntime step returns its logits on the CPU, as it must.
 */
import { spawnSync } from 'node:child_process';
import * as ag from '../src/tensor/autograd.js';
import { fromArray, getRuntime, tidy, type Tensor } from '../src/tensor/tensor.js';
import { inferenceSpeed } from '../src/nn/metrics.js';
import { createModel, type ModelName } from '../src/nn/models.js';
import { SGD } from '../src/nn/optim.js';
import { onnxRuntimeSession } from '../src/onnx/onnxruntime.js';

export interface ModelRow {
  model: string;
  trainBatch: number;
  trainImagesPerS: number;
  evalBatch: number;
  evalImagesPerS: number;
  latencyMs: number;
  torchTrainImagesPerS: number | null;
  torchEvalImagesPerS: number | null;
  /** onnxruntime-node (CPU) on this model's ONNX export, batch evalBatch; null when it is not installed. */
  ortEvalImagesPerS: number | null;
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

/** onnxruntime-node eval images/s of the same model exported to ONNX, or null (with a warning) without it. */
async function ortEvalSpeed(name: string, batch: number, steps: number): Promise<number | null> {
  const model = createModel(name as ModelName);
  model.eval();
  let session;
  try {
    session = await onnxRuntimeSession(model, [3, 32, 32]);
  } catch (e) {
    console.warn(`onnxruntime figures omitted: ${(e as Error).message}`);
    model.dispose();
    return null;
  }
  const x = new Float32Array(batch * 3072).map(() => Math.random() * 2 - 1);
  await session.logits(x, [batch, 3, 32, 32]); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await session.logits(x, [batch, 3, 32, 32]);
  const rate = (batch * steps) / ((performance.now() - t0) / 1e3);
  await session.release();
  model.dispose();
  return rate;
}

interface TorchFigures { torch: string; threads: number; models: Record<string, { train_images_per_s: number; eval_images_per_s: number } | undefined> }

function torchFigures(trainBatch: number, evalBatch: number, steps: number): TorchFigures | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status !== 0) continue;
    const run = spawnSync(python, ['bench/torch_cpu.py', String(trainBatch), String(evalBatch), String(steps)], { encoding: 'utf8' });
    if (run.status === 0) {
      const { torch, threads, ...models } = JSON.parse(run.stdout.trim().split('\n').pop()!);
      return { torch, threads, models };
    }
    console.warn(`PyTorch CPU benchmark failed: ${run.stderr.trim().split('\n').pop()}`);
    return null;
  }
  console.warn('No Python with torch found (e.g. Debian python3-torch): PyTorch CPU figures omitted.');
  return null;
}

export async function benchModels(quick: boolean, log: (line: string) => void): Promise<{ rows: ModelRow[]; torch: string | null; torchThreads: number | null; steps: number }> {
  const trainBatch = 32;
  const evalBatch = quick ? 32 : 128;
  const steps = quick ? 2 : 20;
  const torch = torchFigures(trainBatch, evalBatch, steps);
  const rows: ModelRow[] = [];
  // The reference's two models (bench/torch_cpu.py builds the same two).
  for (const name of ['vgg11_bn', 'resnet18'] as const) {
    log(`benchmarking ${name} ...`);
    const train = await trainSpeed(name, trainBatch, steps);
    const evalRate = await evalSpeed(name, evalBatch, steps);
    const ortRate = await ortEvalSpeed(name, evalBatch, steps);
    // Latency is end to end for one image: upload, forward and readback (the median of 10).
    const model = createModel(name);
    const { latencyMs } = await inferenceSpeed(model, { batchSize: 1, reps: 5 });
    model.dispose();
    rows.push({
      model: name, trainBatch, trainImagesPerS: train, evalBatch, evalImagesPerS: evalRate, latencyMs,
      torchTrainImagesPerS: torch?.models[name]?.train_images_per_s ?? null, torchEvalImagesPerS: torch?.models[name]?.eval_images_per_s ?? null,
      ortEvalImagesPerS: ortRate,
    });
  }
  return { rows, torch: torch?.torch ?? null, torchThreads: torch?.threads ?? null, steps };
}
