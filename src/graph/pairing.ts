/**
 * Conv-BN pairing, one rule for batch-norm folding (the pruner) and the ONNX export: a batch-norm folds
 * into the conv feeding it only when it is that conv output's ONLY reader (and each module runs once per
 * forward pass). Otherwise something else sees the unnormalised map, e.g. `bn(conv(x)) + conv(x)`, and
 * folding would change what it sees.
 */
import { BatchNorm2d, Conv2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { readersOf, traceGraph, weightOwners, type ExampleInput } from './trace.js';

export interface ConvBnPair {
  conv: Conv2d;
  bn: BatchNorm2d;
  /** The traced conv2d op and the batchNorm2d op reading it. */
  convOp: Tensor;
  bnOp: Tensor;
}

/** The foldable (conv, BN) pairs among traced ops (post-order), by the only-reader rule. */
export function pairConvBn(ops: Tensor[], output: Tensor, owners: Map<Tensor, Module>): ConvBnPair[] {
  const readers = readersOf(ops);
  const calls = new Map<Module, number>();
  for (const t of ops) {
    const owner = t.node!.inputs[1] ? owners.get(t.node!.inputs[1]) : undefined;
    if (owner) calls.set(owner, (calls.get(owner) ?? 0) + 1);
  }
  const pairs: ConvBnPair[] = [];
  for (const bnOp of ops) {
    if (bnOp.node!.op !== 'batchNorm2d') continue;
    const convOp = bnOp.node!.inputs[0];
    if (convOp.node?.op !== 'conv2d' || convOp === output || readers.get(convOp)?.length !== 1) continue;
    const bn = owners.get(bnOp.node!.inputs[1]);
    const conv = owners.get(convOp.node.inputs[1]);
    if (!(bn instanceof BatchNorm2d) || !(conv instanceof Conv2d) || calls.get(bn) !== 1 || calls.get(conv) !== 1) continue;
    pairs.push({ conv, bn, convOp, bnOp });
  }
  return pairs;
}

/** The model's foldable (conv, BN) pairs, found by tracing one forward pass. */
export function convBnPairs(model: Module, inputShape: ExampleInput = [3, 32, 32]): [Conv2d, BatchNorm2d][] {
  const owners = weightOwners(model);
  return traceGraph(model, inputShape, (g) => pairConvBn(g.ops, g.output, owners).map((p) => [p.conv, p.bn] as [Conv2d, BatchNorm2d]), 1, true);
}

/**
 * A batch-norm folded into the conv before it, per output channel c: the scale s = gamma / sqrt(var + eps)
 * its row of weights is multiplied by (float64), and the folded bias (b - mean) * s + beta (float32; b = 0
 * for a bias-free conv). One formula for the pruner's fold (bn-fold.ts, rows scaled on the GPU) and the
 * ONNX export's.
 */
export function foldedChannels(eps: number, gamma: Float32Array, beta: Float32Array, mean: Float32Array, variance: Float32Array, b: Float32Array | null): { scale: Float64Array; bias: Float32Array } {
  const scale = Float64Array.from(gamma, (g, c) => g / Math.sqrt(variance[c] + eps));
  const bias = Float32Array.from(scale, (s, c) => ((b ? b[c] : 0) - mean[c]) * s + beta[c]);
  return { scale, bias };
}

/**
 * The conv's weight and bias with an eval batch-norm folded in: W * gamma / sqrt(var + eps) and
 * (b - mean) * gamma / sqrt(var + eps) + beta (float64 arithmetic, float32 results). The ONNX export
 * folds with the BN's eps (exact inference).
 */
export async function foldedConvValues(conv: Conv2d, bn: BatchNorm2d, eps: number): Promise<{ weight: Float32Array; bias: Float32Array }> {
  const [w, b, gamma, beta, mean, variance] = await Promise.all(
    [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var].map((t) => t?.data() ?? null),
  );
  const { scale, bias } = foldedChannels(eps, gamma!, beta!, mean!, variance!, b);
  const per = w!.length / conv.outChannels;
  const weight = Float32Array.from(w!, (v, i) => v * scale[Math.floor(i / per)]);
  return { weight, bias };
}
