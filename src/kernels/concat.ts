/** Launchers for concat.wgsl: concat, slice and the slice gradient along one axis of any rank. */
import { ArgumentError } from '../errors.js';
import { grid1d, Params } from '../tensor/runtime.js';
import { empty, getRuntime, sizeOf, type Shape, type Tensor } from '../tensor/tensor.js';
import source from './wgsl/concat.wgsl';

/** A negative axis counts from the end (ONNX, PyTorch). */
export function normalizeAxis(axis: number, rank: number, op: string): number {
  if (!(Number.isInteger(axis) && axis >= -rank && axis < rank)) throw new ArgumentError(`${op}: axis ${axis} is out of range for rank ${rank}.`);
  return axis < 0 ? axis + rank : axis;
}

/** [outer, D, inner] around `axis`. */
function around(shape: Shape, axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

function dispatch(entry: 'copy_block' | 'pad_block', src: Tensor, out: Tensor, n: number, inner: number, count: number, srcD: number, srcOff: number, dstD: number, dstOff: number): void {
  if (n === 0) return;
  getRuntime().dispatch(
    { name: 'concat', code: source, entryPoint: entry },
    [{ buffer: src.buffer, kind: 'read' }, { buffer: out.buffer, kind: 'write' }],
    new Params().u32(n).u32(inner).u32(count).u32(srcD).u32(srcOff).u32(dstD).u32(dstOff).build(),
    grid1d(n),
  );
}

/** Tensors of equal shape except along `axis`, joined along it (torch.cat, ONNX Concat). */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (!xs.length) throw new ArgumentError('concat: no tensors to join.');
  const rank = xs[0].rank;
  const ax = normalizeAxis(axis, rank, 'concat');
  for (const x of xs) {
    if (x.rank !== rank || x.shape.some((d, i) => i !== ax && d !== xs[0].shape[i])) {
      throw new ArgumentError(`concat: shapes ${xs.map((t) => `[${t.shape}]`).join(', ')} differ outside axis ${ax}.`);
    }
  }
  const total = xs.reduce((s, x) => s + x.shape[ax], 0);
  const shape = xs[0].shape.map((d, i) => (i === ax ? total : d));
  const out = empty(shape);
  const [outer, , inner] = around(shape, ax);
  let offset = 0;
  for (const x of xs) {
    const d = x.shape[ax];
    dispatch('copy_block', x, out, outer * d * inner, inner, d, d, 0, total, offset);
    offset += d;
  }
  return out;
}

function checkRange(x: Tensor, ax: number, start: number, end: number, op: string): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= x.shape[ax])) {
    throw new ArgumentError(`${op}: range [${start}, ${end}) is empty or outside axis ${ax} of [${x.shape}].`);
  }
}

/** x[..., start:end, ...] along `axis` (a copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normalizeAxis(axis, x.rank, 'slice');
  checkRange(x, ax, start, end, 'slice');
  const shape = x.shape.map((d, i) => (i === ax ? end - start : d));
  const out = empty(shape);
  const [outer, D, inner] = around(x.shape, ax);
  dispatch('copy_block', x, out, outer * (end - start) * inner, inner, end - start, D, start, end - start, 0);
  return out;
}

/** The gradient of slice(x, axis, start, end): dy placed at [start, end) of a zero tensor of x's shape. */
export function sliceBackward(dy: Tensor, xShape: Shape, axis: number, start: number): Tensor {
  const ax = normalizeAxis(axis, xShape.length, 'sliceBackward');
  const count = dy.shape[ax];
  if (dy.rank !== xShape.length || start + count > xShape[ax] || dy.shape.some((d, i) => i !== ax && d !== xShape[i])) {
    throw new ArgumentError(`sliceBackward: dy [${dy.shape}] at offset ${start} does not fit in [${xShape}] along axis ${ax}.`);
  }
  const out = empty(xShape);
  const [, D, inner] = around(xShape, ax);
  dispatch('pad_block', dy, out, out.size, inner, count, count, 0, D, start);
  return out;
}
