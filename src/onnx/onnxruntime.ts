/**
 * Evaluation through onnxruntime-node on the CPU, for machines whose only WebGPU adapter is a software one:
 * the model is exported to ONNX in memory and onnxruntime runs the forward passes; accuracy and loss come
 * from the same loop as evaluate(). onnxruntime-node is an optional peer dependency, imported only here,
 * only when asked for.
 */
import { DependencyError } from '../errors.js';
import type { Cifar10Split } from '../data/cifar10.js';
import type { Dataset } from '../data/dataset.js';
import { evaluateLogits, type EvalOptions, type EvalResult, type LogitsFn } from '../nn/metrics.js';
import type { Module } from '../nn/module.js';
import { exportOnnx } from './export.js';

type OnnxRuntime = typeof import('onnxruntime-node');

export interface OnnxRuntimeSession {
  logits: LogitsFn;
  /** Median milliseconds of a batch-1 forward pass on random inputs (the same measure as inferenceSpeed's latency). */
  latencyMs: (reps?: number) => Promise<number>;
  release: () => Promise<void>;
}

export const ONNXRUNTIME_INSTALL = 'npm install onnxruntime-node';

/** The module id imported; a test points it at a package that does not exist to simulate its absence. */
let moduleId = 'onnxruntime-node';
/** For tests: the package name to import instead of onnxruntime-node (restored with no argument). */
export function setOnnxRuntimeModule(id = 'onnxruntime-node'): void {
  moduleId = id;
  runtime = null;
}

let runtime: Promise<OnnxRuntime> | null = null;
/** Imports onnxruntime-node once; a DependencyError that says how to install it when it is missing. */
function loadOnnxRuntime(): Promise<OnnxRuntime> {
  runtime ??= (import(moduleId) as Promise<OnnxRuntime>).catch((e: Error & { code?: string }) => {
    runtime = null;
    if (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') {
      throw new DependencyError(`Evaluating with onnxruntime needs the onnxruntime-node package, which is not installed: run \`${ONNXRUNTIME_INSTALL}\` (about 250 MB, CPU build) beside this package, or use the webgpu backend.`);
    }
    throw new DependencyError(`onnxruntime-node is installed but failed to load: ${e.message}`);
  });
  return runtime;
}

/** Throws the DependencyError now when onnxruntime-node is missing (a CLI checks before loading data). */
export async function requireOnnxRuntime(): Promise<void> {
  await loadOnnxRuntime();
}

/** An onnxruntime CPU session for `model` (exported in eval mode at `inputShape`): its logits function and release. */
export async function onnxRuntimeSession(model: Module, inputShape: [number, number, number]): Promise<OnnxRuntimeSession> {
  const ort = await loadOnnxRuntime();
  const bytes = await exportOnnx(model, { inputShape });
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  const [input] = session.inputNames;
  const [output] = session.outputNames;
  const logits: LogitsFn = async (x, shape) => {
    const result = await session.run({ [input]: new ort.Tensor('float32', x, shape) });
    return result[output].data as Float32Array;
  };
  return {
    logits,
    latencyMs: async (reps = 5) => {
      const x = Float32Array.from({ length: inputShape[0] * inputShape[1] * inputShape[2] }, () => Math.random() * 2 - 1);
      await logits(x, [1, ...inputShape]); // warm-up
      const times: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        await logits(x, [1, ...inputShape]);
        times.push(performance.now() - t0);
      }
      return times.sort((a, b) => a - b)[Math.floor(reps / 2)];
    },
    release: () => session.release(),
  };
}

/** evaluate() with the forward passes run by onnxruntime-node on the CPU; the same result fields. */
export async function evaluateOnnxRuntime(model: Module, data: Dataset | Cifar10Split, o: EvalOptions & { inputShape: [number, number, number] }): Promise<EvalResult> {
  const { logits, release } = await onnxRuntimeSession(model, o.inputShape);
  try {
    return await evaluateLogits(logits, data, o);
  } finally {
    await release();
  }
}
