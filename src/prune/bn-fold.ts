/**
 * Batch-norm folding before pruning (spec section 2): for every BN paired with a conv
 * (src/graph/pairing.ts: the BN is the conv output's only reader, the same rule as the ONNX export's),
 * W' = W * gamma / sqrt(var + eps) and b' = (b - mean) * gamma / sqrt(var + eps) + beta, then the BN is
 * reset to an identity (mean 0, var 1 - eps, gamma 1, beta 0), so at sparsity 0 the model computes the
 * same function. A conv without bias (torchvision style) gets one for the fold (b = 0 before folding);
 * after pruning, `unfoldBiases` moves that bias into the BN's beta and removes it again, so the pruned
 * model has its original layout (and parameter count at its new widths), and `restoreUnpruned` gives every
 * pair the pruning did not reach its exact original values back (folding there would only round them).
 *
 * The reference (its MetaPruner) folds without eps and resets var to 1, which changes the model before
 * anything is pruned (by 1 / sqrt(1 + eps) per BN, and a lot for near-dead channels whose var is ~0), and
 * keeps the added biases: `referenceQuirks` reproduces that.
 */
import { assign } from '../tensor/tensor.js';
import type { BatchNorm2d, Conv2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { convBnPairs, foldedConvValues, type PairValues } from '../graph/pairing.js';
import type { ExampleInput } from '../graph/trace.js';

export { convBnPairs };

export interface FoldOptions {
  /** The reference's fold: no eps, BN var reset to 1, added conv biases kept. Default false. */
  referenceQuirks?: boolean;
}

/** A folded (conv, bn) pair, and whether the conv got its bias from the fold. */
export interface FoldedPair {
  conv: Conv2d;
  bn: BatchNorm2d;
  addedBias: boolean;
  /** The pair's values before folding (restoreUnpruned puts them back where pruning did not reach). */
  before: PairValues;
}

/** Folds every conv-fed batch-norm into its conv, in place; returns the pairs folded. */
export async function foldBatchNormPairs(model: Module, inputShape: ExampleInput = [3, 32, 32], o: FoldOptions = {}): Promise<FoldedPair[]> {
  const pairs = convBnPairs(model, inputShape);
  const folded: FoldedPair[] = [];
  // Every pair's tensors are read back in one flush, not one round trip per pair.
  const foldedValues = await Promise.all(pairs.map(([conv, bn]) => foldedConvValues(conv, bn, o.referenceQuirks ? 0 : bn.eps)));
  for (const [i, [conv, bn]] of pairs.entries()) {
    const addedBias = conv.bias === null;
    const bias = conv.ensureBias();
    const values = foldedValues[i];
    assign(conv.weight, values.weight);
    assign(bias, values.bias);
    const C = bn.numFeatures;
    assign(bn.running_mean, new Float32Array(C));
    // 1 - eps makes the reset BN an exact identity in eval mode: x / sqrt((1 - eps) + eps).
    assign(bn.running_var, new Float32Array(C).fill(o.referenceQuirks ? 1 : 1 - bn.eps));
    assign(bn.weight, new Float32Array(C).fill(1));
    assign(bn.bias, new Float32Array(C));
    folded.push({ conv, bn, addedBias, before: values.before });
  }
  return folded;
}

/** Folds every conv-fed batch-norm into its conv, in place. Returns the number of pairs folded. */
export async function foldBatchNorms(model: Module, inputShape: ExampleInput = [3, 32, 32], o: FoldOptions = {}): Promise<number> {
  return (await foldBatchNormPairs(model, inputShape, o)).length;
}

/**
 * Undoes the layout change of folding: a conv that got its bias from the fold hands it to its BN
 * (beta' = beta + gamma (b - mean) / sqrt(var + eps), mean' = 0, exact in eval mode) and is bias-free
 * again. Works on the pruned widths: the conv and BN were pruned together.
 */
export async function unfoldBiases(pairs: FoldedPair[]): Promise<void> {
  for (const { conv, bn, addedBias } of pairs) {
    if (!addedBias || !conv.bias) continue;
    const [b, gamma, beta, mean, variance] = await Promise.all([conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var].map((t) => t.data()));
    const shifted = beta.map((v, c) => v + (gamma[c] * (b[c] - mean[c])) / Math.sqrt(variance[c] + bn.eps));
    assign(bn.bias, shifted);
    assign(bn.running_mean, new Float32Array(mean.length));
    conv.dropBias();
  }
}

/**
 * Puts back the exact pre-fold values of every pair whose conv and BN `touched` does not hold (layers no
 * pruned group reached): folding them was only needed for importance, and leaving them folded would change
 * their bits (the same function, rounded differently). So a pruned model equals the original bit for bit
 * outside what pruning changed, which is also what lets run.js evaluate its pruned models from the original's
 * activations at a group's first layer. Returns the pairs still folded.
 */
export function restoreUnpruned(pairs: FoldedPair[], touched: ReadonlySet<Module>): FoldedPair[] {
  const stillFolded: FoldedPair[] = [];
  for (const pair of pairs) {
    const { conv, bn, before } = pair;
    if (touched.has(conv) || touched.has(bn)) {
      stillFolded.push(pair);
      continue;
    }
    assign(conv.weight, before.weight);
    if (before.bias) assign(conv.bias!, before.bias);
    else conv.dropBias();
    assign(bn.weight, before.gamma);
    assign(bn.bias, before.beta);
    assign(bn.running_mean, before.mean);
    assign(bn.running_var, before.variance);
  }
  return stillFolded;
}
