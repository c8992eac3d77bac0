/** Taylor importance's gradients: |w * dL/dw| needs dL/dw accumulated over calibration batches in eval mode. */
import * as ag from '../tensor/autograd.js';
import { ArgumentError } from '../errors.js';
import type { Prunable } from '../nn/kinds.js';
import type { Module } from '../nn/module.js';
import { fromArray, tidy } from '../tensor/tensor.js';
import { calibrationBatches, type ImportanceOptions } from './calibration.js';

/** Weight gradients of `layers` accumulated over the taylor batches (one backward pass per batch). */
export async function taylorGradients(model: Module, layers: Prunable[], o: ImportanceOptions): Promise<Map<Prunable, Float32Array>> {
  if (!o.data) throw new ArgumentError('The taylor criterion needs training data (gradients over training batches).');
  const wasTraining = model.training;
  model.eval(); // the reference traces in eval mode; gradients still flow through BN with running stats
  const params = model.parameters();
  ag.zeroGrad(params);
  try {
    for await (const { x, y, count } of calibrationBatches(o.data, o)) {
      // No zero_grad between batches: gradients accumulate, as in the reference.
      tidy(() => ag.backward(ag.crossEntropy(model.call(x), fromArray(y, [count]))));
      x.dispose();
    }
    const grads = new Map<Prunable, Float32Array>();
    for (const l of layers) grads.set(l, l.weight.grad ? await l.weight.grad.data() : new Float32Array(l.weight.size));
    return grads;
  } finally {
    ag.zeroGrad(params);
    model.train(wasTraining);
  }
}
