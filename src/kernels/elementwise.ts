/** Launchers for elementwise.wgsl and reduce.wgsl. */
import { ArgumentError } from '../errors.js';
import { grid1d, Params } from '../tensor/runtime.js';
import { empty, getRuntime, type Shape, type Tensor } from '../tensor/tensor.js';
import elementwiseSource from './wgsl/elementwise.wgsl';
import reduceSource from './wgsl/reduce.wgsl';

type Entry = 'relu' | 'relu_backward' | 'clip' | 'clip_backward' | 'hardtanh_backward' | 'hardsigmoid' | 'hardsigmoid_backward'
  | 'hardswish' | 'hardswish_backward' | 'sigmoid' | 'sigmoid_backward' | 'silu' | 'silu_backward'
  | 'axpby' | 'mul' | 'mul_broadcast' | 'affine' | 'fill' | 'broadcast_scalar';

function run(entry: Entry, a: Tensor | null, b: Tensor | null, outShape: Shape, alpha = 0, beta = 0, inner = 1, count = 1): Tensor {
  const rt = getRuntime();
  const out = empty(outShape);
  const n = out.size;
  rt.dispatch(
    { name: 'elementwise', code: elementwiseSource, entryPoint: entry },
    [
      { buffer: a?.buffer ?? rt.dummy(0), kind: 'read' },
      { buffer: b?.buffer ?? rt.dummy(1), kind: 'read' },
      { buffer: out.buffer, kind: 'write' },
    ],
    new Params().u32(n).f32(alpha).f32(beta).u32(inner).u32(count).build(),
    grid1d(n),
  );
  return out;
}

function sameSize(a: Tensor, b: Tensor, op: string): void {
  if (a.size !== b.size) throw new ArgumentError(`${op}: shapes [${a.shape}] and [${b.shape}] have different sizes.`);
}

// Activations: PyTorch's forward and backward, NaN included (see elementwise.wgsl). Backward launchers take
// the forward input x (sigmoid: its output y) and the upstream gradient dy.

/** max(x, 0); NaN stays NaN. */
export const relu = (x: Tensor) => run('relu', x, null, x.shape);
export const reluBackward = (x: Tensor, dy: Tensor) => (sameSize(x, dy, 'reluBackward'), run('relu_backward', x, dy, x.shape));
/** min(max(x, lo), hi); NaN stays NaN. */
export const clip = (x: Tensor, lo: number, hi: number) => run('clip', x, null, x.shape, lo, hi);
/** torch.clamp's gradient: passes where lo <= x <= hi. */
export const clipBackward = (x: Tensor, dy: Tensor, lo: number, hi: number) => (sameSize(x, dy, 'clipBackward'), run('clip_backward', x, dy, x.shape, lo, hi));
/** torch.nn.Hardtanh's (ReLU6's) gradient: passes where lo < x < hi. */
export const hardtanhBackward = (x: Tensor, dy: Tensor, lo: number, hi: number) =>
  (sameSize(x, dy, 'hardtanhBackward'), run('hardtanh_backward', x, dy, x.shape, lo, hi));
/** max(0, min(1, alpha * x + beta)). */
export const hardSigmoid = (x: Tensor, alpha: number, beta: number) => run('hardsigmoid', x, null, x.shape, alpha, beta);
export const hardSigmoidBackward = (x: Tensor, dy: Tensor, alpha: number, beta: number) =>
  (sameSize(x, dy, 'hardSigmoidBackward'), run('hardsigmoid_backward', x, dy, x.shape, alpha, beta));
/** x * relu6(x + 3) / 6. */
export const hardSwish = (x: Tensor) => run('hardswish', x, null, x.shape);
export const hardSwishBackward = (x: Tensor, dy: Tensor) => (sameSize(x, dy, 'hardSwishBackward'), run('hardswish_backward', x, dy, x.shape));
export const sigmoid = (x: Tensor) => run('sigmoid', x, null, x.shape);
/** From the sigmoid's output y: dy * y * (1 - y). */
export const sigmoidBackward = (y: Tensor, dy: Tensor) => (sameSize(y, dy, 'sigmoidBackward'), run('sigmoid_backward', y, dy, y.shape));
/** x * sigmoid(x). */
export const silu = (x: Tensor) => run('silu', x, null, x.shape);
export const siluBackward = (x: Tensor, dy: Tensor) => (sameSize(x, dy, 'siluBackward'), run('silu_backward', x, dy, x.shape));

/** alpha * a + beta * b */
export const axpby = (alpha: number, a: Tensor, beta: number, b: Tensor) => (sameSize(a, b, 'axpby'), run('axpby', a, b, a.shape, alpha, beta));
export const add = (a: Tensor, b: Tensor) => axpby(1, a, 1, b);
export const mul = (a: Tensor, b: Tensor) => (sameSize(a, b, 'mul'), run('mul', a, b, a.shape));
/** a * b with a viewed as [outer, b.size, inner] and b repeated over outer and inner. */
export function mulBroadcast(a: Tensor, b: Tensor, inner: number): Tensor {
  if (!(Number.isInteger(inner) && inner >= 1 && a.size % (b.size * inner) === 0)) {
    throw new ArgumentError(`mulBroadcast: [${b.shape}] does not repeat over [${a.shape}] with inner size ${inner}.`);
  }
  return run('mul_broadcast', a, b, a.shape, 0, 0, inner, b.size);
}
/** alpha * a + beta */
export const affine = (a: Tensor, alpha: number, beta = 0) => run('affine', a, null, a.shape, alpha, beta);
export const fill = (shape: Shape, value: number) => run('fill', null, null, shape, value);
/** A tensor of `shape` filled with alpha * s[0] (s has one element). */
export const broadcastScalar = (s: Tensor, shape: Shape, alpha = 1) => run('broadcast_scalar', s, null, shape, alpha);

function reduce(entry: 'sum_axis' | 'sum_prod_axis', x: Tensor, y: Tensor | null, outer: number, C: number, inner: number, alpha: number): Tensor {
  // The view may cover a prefix of x (cross-entropy sums the first row of its saved [2, B] buffer).
  if (outer * C * inner > x.size) throw new ArgumentError(`reduce: a [${outer}, ${C}, ${inner}] view needs more than ${x.size} elements.`);
  const rt = getRuntime();
  const out = empty([C]);
  rt.dispatch(
    { name: 'reduce', code: reduceSource, entryPoint: entry },
    [
      { buffer: x.buffer, kind: 'read' },
      { buffer: y?.buffer ?? rt.dummy(0), kind: 'read' },
      { buffer: out.buffer, kind: 'write' },
    ],
    new Params().u32(outer).u32(C).u32(inner).f32(alpha).build(),
    grid1d(C, 1), // one workgroup per output element, folded into y past 65535
  );
  return out;
}

/** out[c] = alpha * sum over (o, i) of x viewed as [outer, C, inner]. */
export const sumAxis = (x: Tensor, outer: number, C: number, inner: number, alpha = 1) => reduce('sum_axis', x, null, outer, C, inner, alpha);
/** out[c] = alpha * sum over (o, i) of x * y, both viewed as [outer, C, inner]. */
export const sumProdAxis = (x: Tensor, y: Tensor, outer: number, C: number, inner: number, alpha = 1) =>
  (sameSize(x, y, 'sumProdAxis'), reduce('sum_prod_axis', x, y, outer, C, inner, alpha));
/** Sum of all elements, as a one-element tensor. */
export const sumAll = (x: Tensor, alpha = 1) => reduce('sum_axis', x, null, 1, 1, x.size, alpha);
