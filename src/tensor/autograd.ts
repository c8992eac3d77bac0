/**
 * Reverse-mode automatic differentiation over the engine's kernels.
 *
 * Each differentiable op runs its forward kernel and, when an input needs a gradient and recording
 * is on, attaches a GradNode whose closure maps the output gradient to input gradients. `backward`
 * walks the graph in reverse topological order and accumulates into `leaf.grad` for leaves created
 * with `requiresGrad` (as PyTorch does, so repeated backward calls add up until `zeroGrad`).
 */
import * as cat from '../kernels/concat.js';
import * as ew from '../kernels/elementwise.js';
import {
  conv2dBackwardData, conv2dBackwardWeight, conv2dForward, convAttributes, matmul as gemm, type Conv2dGeometry,
} from '../kernels/gemm.js';
import {
  adaptiveAvgPoolBackward, adaptiveAvgPoolForward, avgPoolBackward, avgPoolForward, batchNormBackward, batchNormForward, crossEntropyBackward,
  crossEntropyForward, maxPoolBackward, maxPoolForward, type BatchNormState, type PoolGeometry,
} from '../kernels/norm_pool_loss.js';
import { ArgumentError, UnsupportedError } from '../errors.js';
import type { OpName } from '../graph/op-names.js';
import { fromArray, sizeOf, Tensor, tidy, type GradNode, type Shape } from './tensor.js';

let recording = true;

/** Runs `fn` without recording the graph (evaluation, optimiser steps). */
export function noGrad<T>(fn: () => T): T {
  const prev = recording;
  recording = false;
  try {
    return fn();
  } finally {
    recording = prev;
  }
}

/** Whether ops are recorded for backward() now (false inside noGrad). */
export function isRecording(): boolean {
  return recording;
}

function needsGrad(t: Tensor | null | undefined): boolean {
  return !!t && (t.requiresGrad || t.node !== null);
}

/** Attaches the op's backward to `out` when recording and an input needs a gradient. Every op name has a spec in src/graph/ops.ts. */
function record(out: Tensor, op: OpName, inputs: Tensor[], backward: GradNode['backward'], attrs?: GradNode['attrs']): Tensor {
  return recordNode(out, op, inputs, backward, attrs);
}

function recordNode(out: Tensor, op: string, inputs: Tensor[], backward: GradNode['backward'], attrs?: GradNode['attrs']): Tensor {
  if (recording && inputs.some(needsGrad)) out.node = attrs ? { op, inputs, backward, attrs } : { op, inputs, backward };
  return out;
}

/**
 * Records a user-defined op: `out` was computed from `inputs` by the caller's own kernels, and `backward`
 * maps the output gradient to one gradient (or null) per input. Give the op a spec with `registerOp({ name, ... })`
 * so the pruner and the ONNX exporter know it; an op without a spec is refused by both, by name.
 */
export function customOp(name: string, out: Tensor, inputs: Tensor[], backward: GradNode['backward'], attrs?: GradNode['attrs']): Tensor {
  return recordNode(out, name, inputs, backward, attrs);
}

// ------------------------------------------------------------------ ops

/** Elementwise a + b (same shapes). */
export function add(a: Tensor, b: Tensor): Tensor {
  if (a.shape.join() !== b.shape.join()) throw new ArgumentError(`add: shapes [${a.shape}] and [${b.shape}] differ.`);
  return record(ew.add(a, b), 'add', [a, b], (g) => [g, g]);
}

/** a * alpha for a scalar alpha. */
export function scale(a: Tensor, alpha: number): Tensor {
  return record(ew.affine(a, alpha), 'scale', [a], (g) => [ew.affine(g, alpha)], { alpha });
}

/** torch.relu: max(x, 0); NaN stays NaN and passes its gradient, as PyTorch's. */
export function relu(x: Tensor): Tensor {
  return record(ew.relu(x), 'relu', [x], (g) => [ew.reluBackward(x, g)]);
}

function checkBounds(op: string, min: number, max: number): void {
  if (Number.isNaN(min) || Number.isNaN(max) || min > max) throw new ArgumentError(`${op}: bounds [${min}, ${max}] must be numbers with min <= max.`);
}

/**
 * torch.clamp(x, min, max) (ONNX Clip): the gradient passes where min <= x <= max, bounds included.
 * Recorded as op "clip" with attrs { min, max } (infinite for a missing bound).
 */
export function clip(x: Tensor, min = -Infinity, max = Infinity): Tensor {
  checkBounds('clip', min, max);
  return record(ew.clip(x, min, max), 'clip', [x], (g) => [ew.clipBackward(x, g, min, max)], { min, max });
}

/**
 * torch.nn.functional.hardtanh(x, min, max); relu6 is hardtanh(x, 0, 6). The same forward as clip, but
 * PyTorch's gradient is 0 at the bounds themselves. Recorded as op "clip" with attrs { min, max }.
 */
export function hardtanh(x: Tensor, min = -1, max = 1): Tensor {
  checkBounds('hardtanh', min, max);
  return record(ew.clip(x, min, max), 'clip', [x], (g) => [ew.hardtanhBackward(x, g, min, max)], { min, max });
}

/** torch.nn.functional.relu6 = hardtanh(x, 0, 6) (op "clip", attrs { min: 0, max: 6 }). */
export function relu6(x: Tensor): Tensor {
  return hardtanh(x, 0, 6);
}

/**
 * max(0, min(1, alpha * x + beta)): ONNX HardSigmoid; the defaults are PyTorch's (x / 6 + 1/2). The gradient
 * is alpha strictly inside the linear part (PyTorch: -3 < x < 3), else 0. Op "hardSigmoid", attrs { alpha, beta }.
 */
export function hardSigmoid(x: Tensor, alpha = 1 / 6, beta = 0.5): Tensor {
  if (!(Number.isFinite(alpha) && alpha !== 0 && Number.isFinite(beta))) {
    throw new ArgumentError(`hardSigmoid: alpha must be a non-zero finite number and beta finite (got ${alpha}, ${beta}).`);
  }
  return record(ew.hardSigmoid(x, alpha, beta), 'hardSigmoid', [x], (g) => [ew.hardSigmoidBackward(x, g, alpha, beta)], { alpha, beta });
}

/** torch.nn.functional.hardswish: x * relu6(x + 3) / 6, with PyTorch's gradient (x / 3 + 1/2 on [-3, 3]). Op "hardSwish". */
export function hardSwish(x: Tensor): Tensor {
  return record(ew.hardSwish(x), 'hardSwish', [x], (g) => [ew.hardSwishBackward(x, g)]);
}

/** torch.sigmoid; the gradient is computed from the output, as PyTorch does. Op "sigmoid". */
export function sigmoid(x: Tensor): Tensor {
  const y = ew.sigmoid(x);
  return record(y, 'sigmoid', [x], (g) => [ew.sigmoidBackward(y, g)]);
}

/** torch.nn.functional.silu (swish): x * sigmoid(x). Op "silu". */
export function silu(x: Tensor): Tensor {
  return record(ew.silu(x), 'silu', [x], (g) => [ew.siluBackward(x, g)]);
}

/**
 * How `small` repeats over `big` under NumPy broadcasting (shapes right-aligned, each of small's dims 1
 * or equal to big's): as [outer, count, inner] with small = [count]. The dims small keeps must be
 * consecutive ([N, C, 1, 1], [1, C, 1, 1], [1], [1, 1, H, W], ...); null when small does not broadcast to big.
 */
function repeatPattern(big: Shape, small: Shape): { outer: number; count: number; inner: number } | null {
  if (small.length > big.length) return null;
  const s = [...Array(big.length - small.length).fill(1), ...small];
  if (s.some((d, i) => d !== 1 && d !== big[i])) return null;
  const kept = s.map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
  if (!kept.length) return { outer: sizeOf(big), count: 1, inner: 1 };
  const first = kept[0], last = kept[kept.length - 1];
  if (s.slice(first, last + 1).some((d, i) => d !== big[first + i])) {
    throw new UnsupportedError(`mul: broadcasting [${small}] over [${big}] repeats it along inner dims; only a block of consecutive dims can be kept.`);
  }
  return { outer: sizeOf(big.slice(0, first)), count: sizeOf(s.slice(first, last + 1)), inner: sizeOf(big.slice(last + 1)) };
}

/**
 * a * b elementwise, with NumPy broadcasting of one operand over the other when it keeps one block of
 * consecutive dims: same shapes, squeeze-excitation gates x[N, C, H, W] * g[N, C, 1, 1], per-channel
 * [1, C, 1, 1], a scalar. Gradients go to both (the broadcast one summed over its repeats). Op "mul".
 */
export function mul(a: Tensor, b: Tensor): Tensor {
  if (a.shape.join() === b.shape.join()) {
    return record(ew.mul(a, b), 'mul', [a, b], (g) => [needsGrad(a) ? ew.mul(g, b) : null, needsGrad(b) ? ew.mul(g, a) : null]);
  }
  const bOverA = repeatPattern(a.shape, b.shape);
  const aOverB = bOverA ? null : repeatPattern(b.shape, a.shape);
  if (!bOverA && !aOverB) throw new ArgumentError(`mul: shapes [${a.shape}] and [${b.shape}] do not broadcast (one must repeat over the other).`);
  const [big, small, { outer, count, inner }] = bOverA ? [a, b, bOverA] : [b, a, aOverB!];
  const y = ew.mulBroadcast(big, small, inner);
  return record(y, 'mul', [a, b], (g) => {
    const dBig = needsGrad(big) ? ew.mulBroadcast(g, small, inner) : null;
    const dSmall = needsGrad(small) ? new Tensor(small.shape, ew.sumProdAxis(g, big, outer, count, inner)) : null;
    return bOverA ? [dBig, dSmall] : [dSmall, dBig];
  });
}

/** A view with a new shape (same buffer, no copy). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const out = new Tensor(shape, x);
  return record(out, 'reshape', [x], (g) => [new Tensor(x.shape, g)]);
}

/** [B, ...] to [B, rest] (a view). */
export function flatten(x: Tensor): Tensor {
  return reshape(x, [x.shape[0], x.size / x.shape[0]]);
}

/**
 * torch.cat / ONNX Concat: tensors equal in shape except along `axis` (default 1, the channels of NCHW;
 * negative counts from the end). The gradient of each input is its slice of the output's. Op "concat",
 * attrs { axis } (normalised, non-negative); the inputs in order give each one's offset.
 */
export function concat(xs: readonly Tensor[], axis = 1): Tensor {
  const y = cat.concat(xs, axis);
  const ax = cat.normalizeAxis(axis, y.rank, 'concat');
  const offsets = xs.map((_, i) => xs.slice(0, i).reduce((s, x) => s + x.shape[ax], 0));
  return record(y, 'concat', [...xs], (g) => xs.map((x, i) => (needsGrad(x) ? cat.slice(g, ax, offsets[i], offsets[i] + x.shape[ax]) : null)), { axis: ax });
}

/**
 * x[..., start:end, ...] along `axis` (default 1, channels), a copy; ONNX Slice on one axis with step 1. The
 * gradient is dy at [start, end), zeros elsewhere. Op "slice", attrs { axis, start, end } (normalised).
 */
export function slice(x: Tensor, start: number, end: number, axis = 1): Tensor {
  const ax = cat.normalizeAxis(axis, x.rank, 'slice');
  return record(cat.slice(x, ax, start, end), 'slice', [x], (g) => [cat.sliceBackward(g, x.shape, ax, start)], { axis: ax, start, end });
}

/** torch.split with a list of sizes / ONNX Split: consecutive slices (ops "slice") covering `axis` exactly. */
export function split(x: Tensor, sizes: readonly number[], axis = 1): Tensor[] {
  const ax = cat.normalizeAxis(axis, x.rank, 'split');
  const total = sizes.reduce((s, d) => s + d, 0);
  if (!sizes.length || total !== x.shape[ax] || sizes.some((d) => !(Number.isInteger(d) && d >= 1))) {
    throw new ArgumentError(`split: sizes [${sizes}] must be positive integers summing to ${x.shape[ax]} (axis ${ax} of [${x.shape}]).`);
  }
  let start = 0;
  return sizes.map((d) => slice(x, start, (start += d), ax));
}

/** The sum of all elements, as a one-element tensor. */
export function sum(x: Tensor): Tensor {
  return record(ew.sumAll(x), 'sum', [x], (g) => [ew.broadcastScalar(g, x.shape)]);
}

/** The mean of all elements, as a one-element tensor. */
export function mean(x: Tensor): Tensor {
  return record(ew.sumAll(x, 1 / x.size), 'mean', [x], (g) => [ew.broadcastScalar(g, x.shape, 1 / x.size)]);
}

/** Matrix product of [M, K] and [K, N]. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank !== 2 || b.rank !== 2) throw new ArgumentError('matmul (autograd): rank-2 operands only.');
  return record(gemm(a, b), 'matmul', [a, b], (g) => [
    needsGrad(a) ? gemm(g, b, { transB: true }) : null,
    needsGrad(b) ? gemm(a, g, { transA: true }) : null,
  ]);
}

/** y = x @ w^T + b with w stored [out, in], as torch.nn.Linear. */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  if (x.rank !== 2) throw new ArgumentError(`linear: input must be [batch, features], got [${x.shape}].`);
  const y = gemm(x, w, { transB: true, bias: b });
  const [rows, outF] = y.shape;
  return record(y, 'linear', b ? [x, w, b] : [x, w], (g) => [
    needsGrad(x) ? gemm(g, w) : null,
    needsGrad(w) ? gemm(g, x, { transA: true }) : null,
    b && needsGrad(b) ? ew.sumAxis(g, rows, outF, 1) : null,
  ]);
}

/**
 * torch.nn.functional.conv2d: x [N, C, H, W], w [O, C / groups, KH, KW]; any kernel shape, strides, pads
 * (also ONNX's asymmetric [top, left, bottom, right]), dilation and groups. Op "conv2d", attrs the spelled-out
 * geometry: strideH, strideW, padTop, padLeft, padBottom, padRight, dilationH, dilationW, groups.
 */
export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, geometry: Conv2dGeometry): Tensor {
  const y = conv2dForward(x, w, b, geometry);
  const [N, C, OH, OW] = y.shape;
  const { strides, pads, dilations, groups } = convAttributes([w.shape[2], w.shape[3]], geometry);
  const attrs = {
    strideH: strides[0], strideW: strides[1], padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3],
    dilationH: dilations[0], dilationW: dilations[1], groups,
  };
  return record(y, 'conv2d', b ? [x, w, b] : [x, w], (g) => [
    needsGrad(x) ? conv2dBackwardData(g, w, x.shape, geometry) : null,
    needsGrad(w) ? conv2dBackwardWeight(g, x, w.shape, geometry) : null,
    b && needsGrad(b) ? ew.sumAxis(g, N, C, OH * OW) : null,
  ], attrs);
}

export interface BatchNormOptions {
  training: boolean;
  eps?: number;
  momentum?: number;
}

/** Batch-norm over NCHW; in training mode uses batch statistics and updates the running ones in place. */
export function batchNorm2d(x: Tensor, state: BatchNormState, { training, eps = 1e-5, momentum = 0.1 }: BatchNormOptions): Tensor {
  const { y, stats } = batchNormForward(x, state, training, eps, momentum);
  return record(y, 'batchNorm2d', [x, state.gamma, state.beta], (g) => {
    const { dx, dgamma, dbeta } = batchNormBackward(x, g, state.gamma, stats, training);
    return [dx, dgamma, dbeta];
  });
}

/** A pooling op's attrs: its whole geometry, booleans as 0 / 1 (attrs are numbers). */
function poolAttrs({ kernel, stride, padding = 0, ceilMode = false, countIncludePad = true }: PoolGeometry): Record<string, number> {
  return { kernel, stride, padding, ceilMode: ceilMode ? 1 : 0, countIncludePad: countIncludePad ? 1 : 0 };
}

/** torch.nn.functional.max_pool2d, with ceil_mode: padded cells are -inf, never chosen. Op "maxPool2d", attrs the geometry. */
export function maxPool2d(x: Tensor, geometry: PoolGeometry): Tensor {
  return record(maxPoolForward(x, geometry), 'maxPool2d', [x], (g) => [maxPoolBackward(x, g, geometry)], poolAttrs(geometry));
}

/** torch.nn.functional.avg_pool2d, with ceil_mode and count_include_pad (default true). Op "avgPool2d", attrs the geometry. */
export function avgPool2d(x: Tensor, geometry: PoolGeometry): Tensor {
  return record(avgPoolForward(x, geometry), 'avgPool2d', [x], (g) => [avgPoolBackward(x, g, geometry)], poolAttrs(geometry));
}

/**
 * PyTorch's adaptive average pooling to [oh, ow]: output cell (i, j) averages rows floor(i*H/oh) ..
 * ceil((i+1)*H/oh) - 1 and the same for columns. Any input size; [1, 1] is global average pooling.
 */
export function adaptiveAvgPool2d(x: Tensor, size: [number, number]): Tensor {
  return record(adaptiveAvgPoolForward(x, size), 'adaptiveAvgPool2d', [x], (g) => [adaptiveAvgPoolBackward(x, g, size)]);
}

/**
 * Mean softmax cross-entropy of logits [B, C] against integer labels: B class ids, as an array (checked:
 * an id outside 0..C-1 is an ArgumentError naming the row, not a silently wrong loss) or a float tensor.
 */
export function crossEntropy(logits: Tensor, labels: Tensor | ArrayLike<number>): Tensor {
  if (!(labels instanceof Tensor)) {
    const classes = logits.shape[logits.rank - 1];
    for (let i = 0; i < labels.length; i++) {
      const y = labels[i];
      if (!(Number.isInteger(y) && y >= 0 && y < classes)) throw new ArgumentError(`crossEntropy: label ${y} of row ${i} is not a class id in 0..${classes - 1}.`);
    }
    if (labels.length !== logits.shape[0]) throw new ArgumentError(`crossEntropy: ${labels.length} labels for ${logits.shape[0]} rows.`);
    labels = fromArray(labels, [labels.length]);
  }
  const ids = labels;
  const saved = crossEntropyForward(logits, ids);
  const loss = ew.sumAxis(saved, 1, 1, logits.shape[0], 1 / logits.shape[0]); // first row of saved = row losses
  return record(loss, 'crossEntropy', [logits], (g) => [crossEntropyBackward(logits, ids, saved, g)]);
}

// ------------------------------------------------------------------ backward

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep networks would overflow a recursive one.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      if (!seen.has(next) && needsGrad(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

/**
 * Backpropagates from `root` (a one-element tensor unless `gradRoot` is given) and accumulates into
 * the `.grad` of every leaf with `requiresGrad`. Leaf gradients are kept tensors; intermediate
 * gradients are freed before returning. The graph's nodes are released afterwards.
 */
export function backward(root: Tensor, gradRoot?: Tensor): void {
  if (!needsGrad(root)) throw new ArgumentError('backward: the tensor does not depend on any tensor that requires a gradient.');
  if (!gradRoot && root.size !== 1) throw new ArgumentError(`backward: root has shape [${root.shape}]; pass gradRoot for non-scalar outputs.`);
  tidy(() => {
    const grads = new Map<Tensor, Tensor>();
    grads.set(root, gradRoot ?? ew.fill(root.shape, 1));
    for (const t of topoOrder(root)) {
      const g = grads.get(t);
      if (!g) continue;
      if (t.node) {
        const inputGrads = noGrad(() => t.node!.backward(g));
        t.node.inputs.forEach((input, i) => {
          const gi = inputGrads[i];
          if (!gi || !needsGrad(input)) return;
          const prev = grads.get(input);
          grads.set(input, prev ? ew.add(prev, gi) : gi);
        });
      }
      if (t.requiresGrad && !t.node) {
        const prev = t.grad;
        t.grad = (prev ? ew.add(prev, g) : ew.affine(g, 1)).keep();
        prev?.dispose();
      }
    }
    for (const t of grads.keys()) t.node = null;
  });
}

/** Drops the accumulated gradients of `params`. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
