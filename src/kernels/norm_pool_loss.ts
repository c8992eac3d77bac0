/** Launchers for batchnorm.wgsl, pool.wgsl, cross_entropy.wgsl and sgd.wgsl. */
import { ArgumentError } from '../errors.js';
import { grid1d, Params } from '../tensor/runtime.js';
import { empty, getRuntime, type Tensor } from '../tensor/tensor.js';
import batchnormSource from './wgsl/batchnorm.wgsl';
import crossEntropySource from './wgsl/cross_entropy.wgsl';
import poolSource from './wgsl/pool.wgsl';
import sgdSource from './wgsl/sgd.wgsl';

// ------------------------------------------------------------------ batch norm

export interface BatchNormState {
  gamma: Tensor;
  beta: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

interface BnBindings {
  x: Tensor; dy?: Tensor; gamma?: Tensor; beta?: Tensor; stats: Tensor; chanA?: Tensor; chanB?: Tensor; out?: Tensor;
}

function bnDispatch(entry: string, x: Tensor, eps: number, momentum: number, train: boolean, workgroups: [number, number?], b: BnBindings): void {
  const rt = getRuntime();
  const [N, C, H, W] = x.shape;
  rt.dispatch(
    { name: 'batchnorm', code: batchnormSource, entryPoint: entry },
    [
      { buffer: b.x.buffer, kind: 'read' },
      { buffer: b.dy?.buffer ?? rt.dummy(0), kind: 'read' },
      { buffer: b.gamma?.buffer ?? rt.dummy(1), kind: 'read' },
      { buffer: b.beta?.buffer ?? rt.dummy(2), kind: 'read' },
      { buffer: b.stats.buffer, kind: 'write' },
      { buffer: b.chanA?.buffer ?? rt.dummy(3), kind: 'write' },
      { buffer: b.chanB?.buffer ?? rt.dummy(4), kind: 'write' },
      { buffer: b.out?.buffer ?? rt.dummy(5), kind: 'write' },
    ],
    new Params().u32(N).u32(C).u32(H * W).f32(eps).f32(momentum).u32(train ? 1 : 0).build(),
    workgroups,
  );
}

/**
 * Batch-norm forward over NCHW. Returns y and the [mean, invstd] statistics that backward needs.
 * In training mode the running statistics are updated in place (momentum as in PyTorch).
 */
export function batchNormForward(x: Tensor, s: BatchNormState, train: boolean, eps = 1e-5, momentum = 0.1): { y: Tensor; stats: Tensor } {
  if (x.rank !== 4) throw new ArgumentError(`batchNorm2d: expected NCHW input, got [${x.shape}].`);
  const C = x.shape[1];
  for (const [name, t] of Object.entries(s) as [string, Tensor][]) {
    if (t.size !== C) throw new ArgumentError(`batchNorm2d: ${name} has ${t.size} elements, expected ${C}.`);
  }
  if (train && x.size / C < 2) throw new ArgumentError('batchNorm2d: training needs more than one value per channel.');
  const stats = empty([2, C]);
  bnDispatch('stats_main', x, eps, momentum, train, [C], { x, stats, chanA: s.runningMean, chanB: s.runningVar });
  const y = empty(x.shape);
  bnDispatch('apply_main', x, eps, momentum, train, grid1d(x.size), { x, gamma: s.gamma, beta: s.beta, stats, out: y });
  return { y, stats };
}

/**
 * The eval batch-norm as a per-channel table [bias | mean | invstd | gamma | beta] (5C) for a conv's
 * inference epilogue (gemm.wgsl BN_EVAL); `bias` is the conv's (null: zeros). invstd as the eval forward's.
 */
export function batchNormEvalTable(bias: Tensor | null, s: BatchNormState, eps = 1e-5): Tensor {
  const C = s.gamma.size;
  for (const [name, t] of Object.entries(s) as [string, Tensor][]) {
    if (t.size !== C) throw new ArgumentError(`batchNormEvalTable: ${name} has ${t.size} elements, expected ${C}.`);
  }
  if (bias && bias.size !== C) throw new ArgumentError(`batchNormEvalTable: bias has ${bias.size} elements, expected ${C}.`);
  const rt = getRuntime();
  const table = empty([5 * C]);
  rt.dispatch(
    { name: 'batchnorm', code: batchnormSource, entryPoint: 'eval_table' },
    [
      { buffer: (bias ?? s.gamma).buffer, kind: 'read' },
      { buffer: rt.dummy(0), kind: 'read' },
      { buffer: s.gamma.buffer, kind: 'read' },
      { buffer: s.beta.buffer, kind: 'read' },
      { buffer: rt.dummy(1), kind: 'write' },
      { buffer: s.runningMean.buffer, kind: 'write' },
      { buffer: s.runningVar.buffer, kind: 'write' },
      { buffer: table.buffer, kind: 'write' },
    ],
    // train = 1 marks "the conv has a bias" for this entry (there are no batch statistics here).
    new Params().u32(1).u32(C).u32(1).f32(eps).f32(0).u32(bias ? 1 : 0).build(),
    [Math.ceil(C / 64)],
  );
  return table;
}

/** Gradients of batch-norm; `train` must match the forward pass (batch vs running statistics). */
export function batchNormBackward(x: Tensor, dy: Tensor, gamma: Tensor, stats: Tensor, train: boolean): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  const C = x.shape[1];
  const dgamma = empty([C]);
  const dbeta = empty([C]);
  bnDispatch('backward_reduce', x, 0, 0, train, [C], { x, dy, stats, chanA: dgamma, chanB: dbeta });
  const dx = empty(x.shape);
  bnDispatch('backward_dx', x, 0, 0, train, grid1d(x.size), { x, dy, gamma, stats, chanA: dgamma, chanB: dbeta, out: dx });
  return { dx, dgamma, dbeta };
}

// ------------------------------------------------------------------ pooling

export interface PoolGeometry {
  kernel: number;
  stride: number;
  /** Implicit padding on each side, at most kernel / 2 (max-pool: -inf; avg-pool: zeros, see countIncludePad). Default 0. */
  padding?: number;
  /** PyTorch's ceil_mode: one more, partial window where it starts inside the input or its left padding. Default false. */
  ceilMode?: boolean;
  /** Avg-pool only: divide by the window's cells in the padded input (true, PyTorch's default) or in the input. Default true. */
  countIncludePad?: boolean;
}

/**
 * PyTorch's pooled size along one axis: floor((size + 2p - k) / s) + 1, or with ceil_mode the ceiling,
 * less the last window when it would start past the input and its left padding.
 */
export function pooledSize(size: number, kernel: number, stride: number, padding: number, ceilMode: boolean): number {
  let out = Math.floor((size + 2 * padding - kernel + (ceilMode ? stride - 1 : 0)) / stride) + 1;
  if (ceilMode && (out - 1) * stride >= size + padding) out--;
  return out;
}

/** Pooled shape [N, C, OH, OW] (PyTorch's rule, with or without ceil_mode). */
export function poolOutputShape(x: Tensor, { kernel, stride, padding = 0, ceilMode = false }: PoolGeometry): number[] {
  if (x.rank !== 4) throw new ArgumentError(`pool2d: expected NCHW input, got [${x.shape}].`);
  if (!(Number.isInteger(kernel) && kernel >= 1 && Number.isInteger(stride) && stride >= 1)) {
    throw new ArgumentError(`pool2d: kernel and stride must be positive integers (got ${kernel}, ${stride}).`);
  }
  // PyTorch's limit: a window then always holds at least one real cell.
  if (!(Number.isInteger(padding) && padding >= 0 && 2 * padding <= kernel)) {
    throw new ArgumentError(`pool2d: padding must be an integer from 0 to half the kernel size ${kernel}, got ${padding}.`);
  }
  const [N, C, H, W] = x.shape;
  if (kernel > H + 2 * padding || kernel > W + 2 * padding) {
    throw new ArgumentError(`pool2d: a ${kernel}x${kernel} window does not fit a ${H}x${W} input with padding ${padding}.`);
  }
  return [N, C, pooledSize(H, kernel, stride, padding, ceilMode), pooledSize(W, kernel, stride, padding, ceilMode)];
}

/** Forward (dy null): out is the pooled shape [N, C, OH, OW]. Backward: out is x's shape, gathered from dy. */
function poolDispatch(entry: string, x: Tensor, dy: Tensor | null, pooled: number[], g: PoolGeometry): Tensor {
  const rt = getRuntime();
  const [N, C, H, W] = x.shape;
  if (dy && dy.shape.join() !== pooled.join()) throw new ArgumentError(`pool2d backward: dy has shape [${dy.shape}], expected [${pooled}].`);
  const out = empty(dy ? x.shape : pooled);
  rt.dispatch(
    { name: 'pool', code: poolSource, entryPoint: entry },
    [
      { buffer: x.buffer, kind: 'read' },
      { buffer: dy?.buffer ?? rt.dummy(0), kind: 'read' },
      { buffer: out.buffer, kind: 'write' },
    ],
    new Params().u32(N * C).u32(H).u32(W).u32(pooled[2]).u32(pooled[3]).u32(g.kernel).u32(g.stride).u32(g.padding ?? 0)
      .u32(g.countIncludePad === false ? 0 : 1).build(),
    grid1d(out.size),
  );
  return out;
}

export const maxPoolForward = (x: Tensor, g: PoolGeometry) => poolDispatch('max_forward', x, null, poolOutputShape(x, g), g);
export const maxPoolBackward = (x: Tensor, dy: Tensor, g: PoolGeometry) => poolDispatch('max_backward', x, dy, poolOutputShape(x, g), g);
export const avgPoolForward = (x: Tensor, g: PoolGeometry) => poolDispatch('avg_forward', x, null, poolOutputShape(x, g), g);
export const avgPoolBackward = (x: Tensor, dy: Tensor, g: PoolGeometry) => poolDispatch('avg_backward', x, dy, poolOutputShape(x, g), g);

function adaptiveShape(x: Tensor, [oh, ow]: readonly [number, number]): number[] {
  if (x.rank !== 4) throw new ArgumentError(`adaptiveAvgPool2d: expected NCHW input, got [${x.shape}].`);
  if (!(Number.isInteger(oh) && oh >= 1 && Number.isInteger(ow) && ow >= 1)) {
    throw new ArgumentError(`adaptiveAvgPool2d: output size must be positive integers, got ${oh}x${ow}.`);
  }
  return [x.shape[0], x.shape[1], oh, ow];
}

/** torch.nn.AdaptiveAvgPool2d to [oh, ow], any input size (bins of uneven size; 1x1 is global average pooling). */
export const adaptiveAvgPoolForward = (x: Tensor, size: readonly [number, number]) =>
  poolDispatch('adaptive_avg_forward', x, null, adaptiveShape(x, size), { kernel: 0, stride: 0 });
export const adaptiveAvgPoolBackward = (x: Tensor, dy: Tensor, size: readonly [number, number]) =>
  poolDispatch('adaptive_avg_backward', x, dy, adaptiveShape(x, size), { kernel: 0, stride: 0 });

// ------------------------------------------------------------------ cross-entropy

/** Mean softmax cross-entropy. Returns per-row losses and log-sum-exps as `saved` ([2, B]). */
export function crossEntropyForward(logits: Tensor, labels: Tensor): Tensor {
  if (logits.rank !== 2) throw new ArgumentError(`crossEntropy: logits must be [batch, classes], got [${logits.shape}].`);
  const [B, C] = logits.shape;
  if (labels.size !== B) throw new ArgumentError(`crossEntropy: ${labels.size} labels for ${B} rows.`);
  const rt = getRuntime();
  const saved = empty([2, B]);
  rt.dispatch(
    { name: 'cross_entropy', code: crossEntropySource, entryPoint: 'forward' },
    [
      { buffer: logits.buffer, kind: 'read' },
      { buffer: labels.buffer, kind: 'read' },
      { buffer: rt.dummy(0), kind: 'read' },
      { buffer: rt.dummy(1), kind: 'read' },
      { buffer: saved.buffer, kind: 'write' },
    ],
    new Params().u32(B).u32(C).build(),
    [Math.min(B, 65535), Math.ceil(B / 65535)],
  );
  return saved;
}

export function crossEntropyBackward(logits: Tensor, labels: Tensor, saved: Tensor, gradOut: Tensor): Tensor {
  const [B, C] = logits.shape;
  const rt = getRuntime();
  const dlogits = empty(logits.shape);
  rt.dispatch(
    { name: 'cross_entropy', code: crossEntropySource, entryPoint: 'backward' },
    [
      { buffer: logits.buffer, kind: 'read' },
      { buffer: labels.buffer, kind: 'read' },
      { buffer: saved.buffer, kind: 'read' },
      { buffer: gradOut.buffer, kind: 'read' },
      { buffer: dlogits.buffer, kind: 'write' },
    ],
    new Params().u32(B).u32(C).build(),
    grid1d(B * C),
  );
  return dlogits;
}

// ------------------------------------------------------------------ SGD

export interface SgdStepOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  /** First step for this parameter: the momentum buffer is initialised to the update. */
  first: boolean;
}

/** In-place SGD update of `param` (and its momentum buffer `buf`, same size). */
export function sgdStep(param: Tensor, grad: Tensor, buf: Tensor, o: SgdStepOptions): void {
  if (param.size !== grad.size || param.size !== buf.size) {
    throw new ArgumentError(`sgd: parameter [${param.shape}], gradient [${grad.shape}] and momentum buffer [${buf.shape}] differ in size.`);
  }
  getRuntime().dispatch(
    { name: 'sgd', code: sgdSource, entryPoint: 'step' },
    [
      { buffer: grad.buffer, kind: 'read' },
      { buffer: param.buffer, kind: 'write' },
      { buffer: buf.buffer, kind: 'write' },
    ],
    new Params().u32(param.size).f32(o.lr).f32(o.momentum).f32(o.dampening).f32(o.weightDecay)
      .u32(o.nesterov ? 1 : 0).u32(o.first ? 1 : 0).build(),
    grid1d(param.size),
  );
}
