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
import { assign, copyInto, copyOf, type Tensor } from '../tensor/tensor.js';
import { scaleChannels } from '../kernels/prune.js';
import type { BatchNorm2d, Conv2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { convBnPairs, foldedChannels } from '../graph/pairing.js';
import type { ExampleInput } from '../graph/trace.js';

export { convBnPairs };

export interface FoldOptions {
  /** The reference's fold: no eps, BN var reset to 1, added conv biases kept. Default false. */
  referenceQuirks?: boolean;
}

/** A pair's values before folding: the conv weight as a copy on the GPU, the per-channel tensors on the host. */
export interface BeforeFold {
  weight: Tensor;
  bias: Float32Array | null;
  gamma: Float32Array;
  beta: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
}

/** A folded (conv, bn) pair, and whether the conv got its bias from the fold. */
export interface FoldedPair {
  conv: Conv2d;
  bn: BatchNorm2d;
  addedBias: boolean;
  /** The pair's values before folding (restoreUnpruned puts them back; releaseFolded frees the weight copy). */
  before: BeforeFold;
}

/**
 * Folds every conv-fed batch-norm into its conv, in place; returns the pairs folded, each holding a GPU
 * copy of its conv's weight until `releaseFolded`. The weights never leave the GPU: every pair's
 * per-channel tensors come back in one flush, the scales gamma / sqrt(var + eps) and the biases are
 * computed in float64 on the host, and the rows are scaled there (W * s, one float32 rounding).
 */
export async function foldBatchNormPairs(model: Module, inputShape: ExampleInput = [3, 32, 32], o: FoldOptions = {}): Promise<FoldedPair[]> {
  const pairs = convBnPairs(model, inputShape);
  const read = await Promise.all(pairs.map(([conv, bn]) => Promise.all([conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var].map((t) => t?.data() ?? null))));
  const folded: FoldedPair[] = [];
  try {
    foldPairs(pairs, read, folded, o);
  } catch (e) {
    // The pairs folded before the throw get their values back, then their copies are freed.
    restoreUnpruned(folded, new Set());
    releaseFolded(folded);
    throw e;
  }
  return folded;
}

function foldPairs(pairs: [Conv2d, BatchNorm2d][], read: (Float32Array | null)[][], folded: FoldedPair[], o: FoldOptions): void {
  for (const [i, [conv, bn]] of pairs.entries()) {
    const [b, gamma, beta, mean, variance] = read[i] as [Float32Array | null, Float32Array, Float32Array, Float32Array, Float32Array];
    const C = conv.outChannels;
    const { scale, bias } = foldedChannels(o.referenceQuirks ? 0 : bn.eps, gamma, beta, mean, variance, b);
    const before: BeforeFold = { weight: copyOf(conv.weight).keep(), bias: b, gamma, beta, mean, variance };
    folded.push({ conv, bn, addedBias: conv.bias === null, before });
    scaleChannels(before.weight, conv.weight, Float32Array.from(scale), 1, conv.weight.size / C);
    assign(conv.ensureBias(), bias);
    assign(bn.running_mean, new Float32Array(C));
    // 1 - eps makes the reset BN an exact identity in eval mode: x / sqrt((1 - eps) + eps).
    assign(bn.running_var, new Float32Array(C).fill(o.referenceQuirks ? 1 : 1 - bn.eps));
    assign(bn.weight, new Float32Array(C).fill(1));
    assign(bn.bias, new Float32Array(C));
  }
}

/** Frees the weight copies foldBatchNormPairs kept (once pruning no longer needs them). */
export function releaseFolded(pairs: FoldedPair[]): void {
  for (const { before } of pairs) before.weight.dispose();
}

/** Folds every conv-fed batch-norm into its conv, in place. Returns the number of pairs folded. */
export async function foldBatchNorms(model: Module, inputShape: ExampleInput = [3, 32, 32], o: FoldOptions = {}): Promise<number> {
  const pairs = await foldBatchNormPairs(model, inputShape, o);
  releaseFolded(pairs);
  return pairs.length;
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
    copyInto(conv.weight, before.weight);
    if (before.bias) assign(conv.bias!, before.bias);
    else conv.dropBias();
    assign(bn.weight, before.gamma);
    assign(bn.bias, before.beta);
    assign(bn.running_mean, before.mean);
    assign(bn.running_var, before.variance);
  }
  return stillFolded;
}
