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

/** A conv-BN pair's tensors as read before folding (the conv's bias null when it has none). */
export interface PairValues {
  weight: Float32Array;
  bias: Float32Array | null;
  gamma: Float32Array;
  beta: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
}

/**
 * The conv's weight and bias with an eval batch-norm folded in: W * gamma / sqrt(var + eps) and
 * (b - mean) * gamma / sqrt(var + eps) + beta (float64 arithmetic, float32 results), and the values read.
 * The pruner folds with eps = 0 under referenceQuirks (the reference) and the BN's eps otherwise, the ONNX
 * export with the BN's eps (exact inference).
 */
export async function foldedConvValues(conv: Conv2d, bn: BatchNorm2d, eps: number): Promise<{ weight: Float32Array; bias: Float32Array; before: PairValues }> {
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
  return { weight, bias, before: { weight: w!, bias: b, gamma: gamma!, beta: beta!, mean: mean!, variance: variance! } };
}
