/**
 * Batch-norm folding as the reference's MetaPruner does before any pruning (spec section 2): for every
 * BN fed directly by a conv, W' = W * gamma / sqrt(var) and b' = (b - mean) * gamma / sqrt(var) + beta,
 * with no epsilon, then the BN is reset to mean 0, var 1, gamma 1, beta 0 (so in eval mode it still
 * multiplies by 1 / sqrt(1 + eps)). A conv without bias (torchvision style) gets one: b = 0 before folding.
 */
import { assign } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { traceOps, weightOwners, type ExampleInput } from './graph.js';

/** Pairs (conv, bn) where the BN's input is that conv's output, found by tracing one forward pass. */
export function convBnPairs(model: Module, inputShape: ExampleInput = [3, 32, 32]): [Conv2d, BatchNorm2d][] {
  const owner = weightOwners(model);
  const pairs: [Conv2d, BatchNorm2d][] = [];
  traceOps(model, inputShape, (t) => {
    if (t.node!.op !== 'batchNorm2d') return;
    const bn = owner.get(t.node!.inputs[1]);
    const producer = t.node!.inputs[0].node;
    const conv = producer?.op === 'conv2d' ? owner.get(producer.inputs[1]) : undefined;
    if (bn instanceof BatchNorm2d && conv instanceof Conv2d) pairs.push([conv, bn]);
  });
  return pairs;
}

/**
 * The conv's weight and bias with an eval batch-norm folded in: W * gamma / sqrt(var + eps) and
 * (b - mean) * gamma / sqrt(var + eps) + beta (float64 arithmetic, float32 results). The pruner folds with
 * eps = 0 (the reference), the ONNX export with the BN's eps (exact inference).
 */
export async function foldedConvValues(conv: Conv2d, bn: BatchNorm2d, eps: number): Promise<{ weight: Float32Array; bias: Float32Array }> {
  const [w, b, gamma, beta, mean, variance] = await Promise.all(
    [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var].map((t) => t?.data() ?? null),
  );
  const C = conv.outChannels;
  const per = w!.length / C;
  const weight = new Float32Array(w!.length);
  const bias = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const s = gamma![c] / Math.sqrt(variance![c] + eps);
    for (let i = 0; i < per; i++) weight[c * per + i] = w![c * per + i] * s;
    bias[c] = ((b ? b[c] : 0) - mean![c]) * s + beta![c];
  }
  return { weight, bias };
}

/** Folds every conv-fed batch-norm into its conv, in place. Returns the number of pairs folded. */
export async function foldBatchNorms(model: Module, inputShape: ExampleInput = [3, 32, 32]): Promise<number> {
  const pairs = convBnPairs(model, inputShape);
  for (const [conv, bn] of pairs) {
    const bias = conv.ensureBias();
    const folded = await foldedConvValues(conv, bn, 0);
    assign(conv.weight, folded.weight);
    assign(bias, folded.bias);
    const C = bn.numFeatures;
    assign(bn.running_mean, new Float32Array(C));
    assign(bn.running_var, new Float32Array(C).fill(1));
    assign(bn.weight, new Float32Array(C).fill(1));
    assign(bn.bias, new Float32Array(C));
  }
  return pairs.length;
}
