/**
 * Batch-norm folding as the reference's MetaPruner does before any pruning (spec section 2): for every
 * BN paired with a conv (src/graph/pairing.ts: the BN is the conv output's only reader),
 * W' = W * gamma / sqrt(var) and b' = (b - mean) * gamma / sqrt(var) + beta, with no epsilon, then the BN
 * is reset to mean 0, var 1, gamma 1, beta 0 (so in eval mode it still multiplies by 1 / sqrt(1 + eps)).
 * A conv without bias (torchvision style) gets one: b = 0 before folding.
 */
import { assign } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { convBnPairs, foldedConvValues } from '../graph/pairing.js';
import type { ExampleInput } from '../graph/trace.js';

export { convBnPairs };

/** Folds every paired batch-norm into its conv, in place. Returns the number of pairs folded. */
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
