/** Launchers for the GEMM family (gemm.wgsl): batched matmul and the three implicit-GEMM conv passes. */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { Params, type KernelSpec } from '../tensor/runtime.js';
import { empty, getRuntime, type Tensor } from '../tensor/tensor.js';
import { preprocess } from './preprocess.js';
import source from './wgsl/gemm.wgsl';

const codeCache = new Map<string, string>();
function gemmCode(subgroups: boolean, vecB: boolean): string {
  const key = `${subgroups}/${vecB}`;
  let code = codeCache.get(key);
  if (!code) codeCache.set(key, (code = preprocess(source, { SUBGROUPS: subgroups, VEC_B: vecB })));
  return code;
}

/** Lanes per workgroup: 32 for big N, fewer when N is small so little of each tile is wasted. */
function lanesFor(n: number): number {
  if (n >= 4 * 32) return 32;
  if (n >= 4 * 16) return 16;
  return 8;
}

/** Rows of C per workgroup (ROWS in gemm.wgsl). */
const ROWS = 16;

/** The convolution a MODE 1-3 pass computes; cin and cout count the channels of one group. */
interface Geometry {
  batch: number; cin: number; h: number; w: number;
  cout: number; oh: number; ow: number;
  kh: number; kw: number; strideH: number; strideW: number;
  /** Top and left padding (the bottom and right ones are in oh, ow). */
  padT: number; padL: number;
  dilH: number; dilW: number; groups: number;
}
const NO_GEOMETRY: Geometry = {
  batch: 0, cin: 0, h: 0, w: 0, cout: 0, oh: 0, ow: 0, kh: 1, kw: 1, strideH: 1, strideW: 1, padT: 0, padL: 0, dilH: 1, dilW: 1, groups: 1,
};

function launch(
  mode: 0 | 1 | 2 | 3,
  a: Tensor, b: Tensor, bias: Tensor | null, out: Tensor,
  M: number, N: number, K: number, batches: number,
  strides: [number, number, number], g: Geometry,
  flags: { transA?: boolean; transB?: boolean; flipW?: boolean; bnEval?: boolean; relu?: boolean; pool2?: boolean; addBias?: boolean } = {},
): void {
  const rt = getRuntime();
  const lanes = lanesFor(N);
  // Aligned vec4 loads of B need contiguous, 16-byte-aligned rows: plain matmul with N % 4 == 0.
  const vecB = mode === 0 && !flags.transB && N % 4 === 0 && strides[1] % 4 === 0;
  const spec: KernelSpec = {
    name: vecB ? 'gemm_vec4' : 'gemm',
    code: gemmCode(rt.subgroups, vecB),
    entryPoint: 'main',
    constants: {
      MODE: mode,
      TRANS_A: flags.transA ? 1 : 0,
      TRANS_B: flags.transB ? 1 : 0,
      // A BN table in the bias slot starts with the conv's bias, added only when the conv has one (v + 0 is not v for -0).
      HAS_BIAS: bias && flags.addBias !== false ? 1 : 0,
      FLIP_W: flags.flipW ? 1 : 0,
      BN_EVAL: flags.bnEval ? 1 : 0,
      RELU: flags.relu ? 1 : 0,
      POOL2: flags.pool2 ? 1 : 0,
      KH: g.kh,
      KW: g.kw,
      DH: g.dilH,
      DW: g.dilW,
      WG: lanes,
    },
  };
  const params = new Params().u32(M).u32(N).u32(K).u32(strides[0]).u32(strides[1]).u32(strides[2])
    .u32(g.batch).u32(g.cin).u32(g.h).u32(g.w).u32(g.cout).u32(g.oh).u32(g.ow)
    .u32(g.strideH).u32(g.strideW).u32(g.padT).u32(g.padL).u32(g.groups).build();
  rt.dispatch(
    spec,
    [
      { buffer: a.buffer, kind: 'read' },
      { buffer: b.buffer, kind: 'read' },
      { buffer: (bias ?? a).buffer, kind: 'read' },
      { buffer: out.buffer, kind: 'write' },
    ],
    params,
    [Math.ceil(N / (4 * lanes)), Math.ceil(M / ROWS), batches],
  );
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Added to every row (length N). */
  bias?: Tensor | null;
}

/**
 * op(a) @ op(b) for rank-2 or rank-3 tensors (a leading batch dim; a rank-2 operand broadcasts).
 * With transA, a is stored [..., K, M]; with transB, b is stored [..., N, K].
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) {
    throw new ArgumentError(`matmul: operands must be rank 2 or 3, got [${a.shape}] and [${b.shape}].`);
  }
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = opts.transA ? ac : ar;
  const K = opts.transA ? ar : ac;
  const Kb = opts.transB ? bc : br;
  const N = opts.transB ? br : bc;
  if (K !== Kb) throw new ArgumentError(`matmul: inner dimensions differ (${K} vs ${Kb}) for [${a.shape}] and [${b.shape}].`);
  const batchA = a.rank === 3 ? a.shape[0] : 1;
  const batchB = b.rank === 3 ? b.shape[0] : 1;
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) {
    throw new ArgumentError(`matmul: batch sizes ${batchA} and ${batchB} do not broadcast.`);
  }
  const batches = Math.max(batchA, batchB);
  const bias = opts.bias ?? null;
  if (bias && bias.size !== N) throw new ArgumentError(`matmul: bias has ${bias.size} elements, expected ${N}.`);
  const out = empty(a.rank === 3 || b.rank === 3 ? [batches, M, N] : [M, N]);
  launch(0, a, b, bias, out, M, N, K, batches, [batchA > 1 ? M * K : 0, batchB > 1 ? K * N : 0, M * N], NO_GEOMETRY, opts);
  return out;
}

export interface Conv2dGeometry {
  /** One stride for both axes, or [height, width]. */
  stride: number | readonly [number, number];
  /** Zero padding: one for all sides, [height, width] (each on both sides), or ONNX's [top, left, bottom, right]. */
  padding: number | readonly [number, number] | readonly [number, number, number, number];
  /** Channel groups (1: dense; in = out = groups: depthwise). Weight [out, in / groups, kh, kw]. Default 1. */
  groups?: number;
  /** Kernel dilation: one for both axes or [height, width]. Default 1. */
  dilation?: number | readonly [number, number];
}

/** A conv's geometry with every field spelled out (ONNX's attribute layout). */
export interface ConvAttributes {
  kernelShape: [number, number];
  strides: [number, number];
  /** [top, left, bottom, right] */
  pads: [number, number, number, number];
  dilations: [number, number];
  groups: number;
}

/** [height, width] from one number or a pair. */
function pair(v: number | readonly number[], what: string): [number, number] {
  const p = typeof v === 'number' ? [v, v] : [...v];
  if (p.length !== 2) throw new ArgumentError(`conv2d: ${what} must be a number or [height, width], got [${p}].`);
  return [p[0], p[1]];
}

/** Spells out stride, padding, dilation and groups (checked: positive integer strides and dilations, non-negative integer pads). */
export function convAttributes(kernelShape: readonly [number, number], { stride, padding, groups = 1, dilation = 1 }: Conv2dGeometry): ConvAttributes {
  const strides = pair(stride, 'stride');
  const dilations = pair(dilation, 'dilation');
  const p = typeof padding === 'number' ? [padding, padding, padding, padding] : padding.length === 2 ? [padding[0], padding[1], padding[0], padding[1]] : [...padding];
  if (p.length !== 4) throw new ArgumentError(`conv2d: padding must be a number, [height, width] or [top, left, bottom, right], got [${p}].`);
  const positive = (v: number) => Number.isInteger(v) && v >= 1;
  if (!strides.every(positive) || !dilations.every(positive) || !p.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new ArgumentError(`conv2d: strides [${strides}] and dilations [${dilations}] must be positive integers and pads [${p}] non-negative integers.`);
  }
  return { kernelShape: [kernelShape[0], kernelShape[1]], strides, pads: [p[0], p[1], p[2], p[3]], dilations, groups };
}

/** floor((size + padBefore + padAfter - dilation * (k - 1) - 1) / stride) + 1, PyTorch's and ONNX's conv output size. */
export function conv2dOutputSize(size: number, k: number, stride: number, padBefore: number, padAfter = padBefore, dilation = 1): number {
  return Math.floor((size + padBefore + padAfter - dilation * (k - 1) - 1) / stride) + 1;
}

/** Kernel rows and columns are bit masks in a u32 (gemm.wgsl, convCol). */
const MAX_KERNEL = 32;

/** Checks shapes and returns the per-group geometry of conv2d(x [N, C, H, W], w [O, C / groups, KH, KW]). */
function convGeometry(xShape: readonly number[], wShape: readonly number[], geometry: Conv2dGeometry): Geometry {
  if (xShape.length !== 4 || wShape.length !== 4) throw new ArgumentError(`conv2d: x and w must be NCHW / OIHW, got [${xShape}] and [${wShape}].`);
  const [batch, cin, h, wd] = xShape;
  const [cout, wcin, kh, kw] = wShape;
  const { strides: [sh, sw], pads: [pt, pl, pb, pr], dilations: [dh, dw], groups } = convAttributes([kh, kw], geometry);
  if (!(Number.isInteger(groups) && groups >= 1 && cin % groups === 0 && cout % groups === 0)) {
    throw new ArgumentError(`conv2d: groups ${groups} must be a positive integer dividing the ${cin} input and ${cout} output channels.`);
  }
  if (wcin * groups !== cin) {
    const perGroup = groups > 1 ? ` (${groups} groups of ${wcin})` : '';
    throw new ArgumentError(`conv2d: input has ${cin} channels but the weight expects ${wcin * groups}${perGroup}.`);
  }
  if (kh > MAX_KERNEL || kw > MAX_KERNEL) throw new UnsupportedError(`conv2d: kernels up to ${MAX_KERNEL}x${MAX_KERNEL} are supported, got ${kh}x${kw}.`);
  const oh = conv2dOutputSize(h, kh, sh, pt, pb, dh);
  const ow = conv2dOutputSize(wd, kw, sw, pl, pr, dw);
  if (oh < 1 || ow < 1) {
    const dilated = dh > 1 || dw > 1 ? ` dilated [${dh}, ${dw}]` : '';
    throw new ArgumentError(`conv2d: a ${kh}x${kw} kernel${dilated} does not fit a ${h}x${wd} input with pads [${[pt, pl, pb, pr]}].`);
  }
  return { batch, cin: cin / groups, h, w: wd, cout: cout / groups, oh, ow, kh, kw, strideH: sh, strideW: sw, padT: pt, padL: pl, dilH: dh, dilW: dw, groups };
}

/** y = conv2d(x, w) + b, NCHW, any kernel shape, strides, pads, dilation and groups. One GEMM per group (workgroup z). */
export function conv2dForward(x: Tensor, w: Tensor, bias: Tensor | null, geometry: Conv2dGeometry): Tensor {
  const g = convGeometry(x.shape, w.shape, geometry);
  const cout = g.cout * g.groups;
  if (bias && bias.size !== cout) throw new ArgumentError(`conv2d: bias has ${bias.size} elements, expected ${cout}.`);
  const y = empty([g.batch, cout, g.oh, g.ow]);
  launch(1, w, x, bias, y, g.cout, g.batch * g.oh * g.ow, g.cin * g.kh * g.kw, g.groups, [0, 0, 0], g);
  return y;
}

export interface InferenceEpilogue {
  /** The table batchNormEvalTable builds ([bias | mean | invstd | gamma | beta]); it replaces the bias. */
  bnTable?: Tensor | null;
  relu?: boolean;
  /** A 2x2, stride-2, unpadded max-pool of the result (the conv output's height and width must be even). */
  pool2?: boolean;
}

/**
 * Inference forward of a conv layer block in one dispatch: conv2d(x, w) + bias, then optionally the eval
 * batch-norm, ReLU and a 2x2 max-pool, each computed as its own kernel would (no autograd record).
 */
export function conv2dInference(x: Tensor, w: Tensor, bias: Tensor | null, geometry: Conv2dGeometry, e: InferenceEpilogue): Tensor {
  const g = convGeometry(x.shape, w.shape, geometry);
  const cout = g.cout * g.groups;
  if (e.bnTable && e.bnTable.size !== 5 * cout) throw new ArgumentError(`conv2dInference: the batch-norm table has ${e.bnTable.size} entries, expected ${5 * cout}.`);
  if (!e.bnTable && bias && bias.size !== cout) throw new ArgumentError(`conv2d: bias has ${bias.size} elements, expected ${cout}.`);
  if (e.pool2 && (g.oh % 2 !== 0 || g.ow % 2 !== 0)) throw new ArgumentError(`conv2dInference: a fused 2x2 pool needs an even output, got ${g.oh}x${g.ow}.`);
  const y = empty(e.pool2 ? [g.batch, cout, g.oh / 2, g.ow / 2] : [g.batch, cout, g.oh, g.ow]);
  launch(1, w, x, e.bnTable ?? bias, y, g.cout, g.batch * g.oh * g.ow, g.cin * g.kh * g.kw, g.groups, [0, 0, 0], g, { bnEval: !!e.bnTable, relu: e.relu, pool2: e.pool2, addBias: bias !== null });
  return y;
}

/**
 * dL/dx of conv2d. Stride 1: a convolution of dy with the weights transposed and rotated 180 degrees
 * (same dilation, top/left padding d*(K-1) - pad), which runs on the fast implicit-GEMM path. Other strides
 * (or pads beyond d*(K-1)): a gather per input pixel over the output positions it contributed to (no atomics).
 */
export function conv2dBackwardData(dy: Tensor, w: Tensor, xShape: readonly number[], geometry: Conv2dGeometry): Tensor {
  const g = convGeometry(xShape, w.shape, geometry);
  const { batch, cin, h, w: wd, cout, oh, ow, kh, kw, dilH, dilW, groups } = g;
  if (dy.shape.join() !== [batch, cout * groups, oh, ow].join()) {
    throw new ArgumentError(`conv2d backward: dy has shape [${dy.shape}], expected [${[batch, cout * groups, oh, ow]}].`);
  }
  const dx = empty(xShape);
  if (g.strideH === 1 && g.strideW === 1 && g.padT <= dilH * (kh - 1) && g.padL <= dilW * (kw - 1)) {
    // Convolve dy [batch, cout, oh, ow] into dx [batch, cin, h, w].
    const flipped: Geometry = {
      batch, cin: cout, h: oh, w: ow, cout: cin, oh: h, ow: wd, kh, kw, strideH: 1, strideW: 1,
      padT: dilH * (kh - 1) - g.padT, padL: dilW * (kw - 1) - g.padL, dilH, dilW, groups,
    };
    launch(1, w, dy, null, dx, cin, batch * h * wd, cout * kh * kw, groups, [0, 0, 0], flipped, { flipW: true });
  } else {
    launch(2, w, dy, null, dx, cin, batch * h * wd, cout * kh * kw, groups, [0, 0, 0], g);
  }
  return dx;
}

/** dL/dw of conv2d: a reduction over batch and output pixels. */
export function conv2dBackwardWeight(dy: Tensor, x: Tensor, wShape: readonly number[], geometry: Conv2dGeometry): Tensor {
  const g = convGeometry(x.shape, wShape, geometry);
  const dw = empty(wShape);
  launch(3, dy, x, null, dw, g.cout, g.cin * g.kh * g.kw, g.batch * g.oh * g.ow, g.groups, [0, 0, 0], g);
  return dw;
}
