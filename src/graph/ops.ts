/**
 * The op table: one typed spec per autograd op, read by the pruner's dependency graph (channel rule),
 * dimensionality-preserving pruning and the zeroed-dense tests (whether zero stays zero), the ONNX
 * exporter (export) and importer (the ONNX op types it imports), and the README's op table (generated
 * from here). Adding an op is its kernel, its autograd function and one spec here (or `registerOp` from
 * outside the package).
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { BatchNorm2d, Conv2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { AttributeType, DataType, type Attribute } from '../onnx/proto.js';
import type { Tensor } from '../tensor/tensor.js';
import type { OpName } from './op-names.js';
import { foldedConvValues } from './pairing.js';

export type { OpName };

/**
 * How an op's output channels relate to its inputs' (the pruner's dependency graph):
 *   layer    the op of a registered layer kind (its weight is inputs[1]); the kind decides (new space or same)
 *   preserve output channel c is channel c of the first input (elementwise ops, pooling)
 *   merge    every operand and the output share one channel space (residual add)
 *   merge    every operand and the output share one channel space (residual add, and a channel-broadcast
 *            mul: a squeeze-excitation gate [N, C, 1, 1] merges with the gated [N, C, H, W]; an operand
 *            without the output's channels, e.g. a scalar, carries none)
 *   flatten  [N, C, H, W] -> [N, C*H*W]: channel c becomes H*W consecutive columns
 *   concat   along channels: input i's channel c is output channel offset_i + c (other axes: refused)
 *   slice    along channels: output channel c is input channel start + c (other axes: refused)
 *   none     no channel rule: tracing a model that uses it for pruning is refused, naming it
 */
export type ChannelRule = 'layer' | 'preserve' | 'merge' | 'flatten' | 'concat' | 'slice' | 'none';

export const CHANNEL_RULES: Readonly<Record<ChannelRule, string>> = {
  layer: 'the layer kind decides (Conv2d, Linear: new channels; BatchNorm2d, depthwise conv: same channels)',
  preserve: 'output channel c is input channel c',
  merge: 'all operands and the output share one channel space (pruned together)',
  flatten: 'channel c becomes H*W consecutive features of the next Linear',
  concat: 'along channels: input i channel c is output channel offset_i + c',
  slice: 'along channels: output channel c is input channel start + c',
  none: 'not prunable through: refused with its name',
};

/** What an op's ONNX export writes with (implemented by src/onnx/export.ts). */
export interface OnnxExportContext {
  opset: number;
  /** Owner of a parameter tensor (the layer whose weight it is). */
  owner(weight: Tensor): Module | undefined;
  /** The ONNX value name of a tensor already written (an earlier op's output or the graph input). */
  input(t: Tensor): string;
  /** The initializer of a model parameter or buffer, written once, named as in the state_dict. */
  param(t: Tensor, role?: string): string;
  /** The state_dict name of a parameter or buffer, without writing it. */
  paramName(t: Tensor, role: string): string;
  /** Writes an initializer under exactly `name` (values read after the trace). */
  initializer(name: string, dims: number[], values: () => Promise<Float32Array | BigInt64Array>, dataType?: number): string;
  /** A fresh name: `base`, or `base_1`, ... */
  unique(base: string): string;
  /** The node's name base for an op: its module path, or the op and a counter. */
  nameOf(t: Tensor): string;
  /** The batch-norm op folded into this conv2d op by the pairing rule (src/graph/pairing.ts), if any. */
  foldedBatchNorm(convOp: Tensor): Tensor | undefined;
  /** Writes one node computing `t` (its output is named after `t`). */
  emit(t: Tensor, opType: string, inputs: string[], attributes?: Attribute[]): void;
  /** Writes an intermediate node of a multi-node export of `t`; returns its output's name. */
  intermediate(t: Tensor, opType: string, inputs: string[], attributes?: Attribute[]): string;
}

export interface OpSpec {
  name: string;
  /** One line for the README's op table. */
  summary: string;
  channels: ChannelRule;
  /**
   * Whether a zero input channel gives a zero output channel (relu(0) = 0, but sigmoid(0) = 0.5), or a
   * function of the recorded attrs (clip: when min <= 0 <= max). The zeroed-dense equivalence (pruning =
   * zeroing the pruned producer rows) holds through these ops only.
   */
  zeroStaysZero: boolean | ((attrs: Readonly<Record<string, number>>) => boolean);
  onnx?: {
    /** ONNX op types the export writes (for docs). */
    exportsAs: string[];
    export(t: Tensor, ctx: OnnxExportContext): void;
    /** ONNX op types whose import produces this op. */
    imports: string[];
  };
}

export const ints = (name: string, values: number[]): Attribute => ({ name, type: AttributeType.INTS, ints: values });
export const int = (name: string, value: number): Attribute => ({ name, type: AttributeType.INT, i: value });
export const float = (name: string, value: number): Attribute => ({ name, type: AttributeType.FLOAT, f: value });

const noChannelRule = (name: OpName, summary: string): OpSpec => ({ name, summary, channels: 'none', zeroStaysZero: false });

const BUILTIN_OPS: { readonly [K in OpName]: OpSpec } = {
  conv2d: {
    name: 'conv2d', summary: 'Conv2d: any square kernel, stride, padding, groups', channels: 'layer', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Conv'], imports: ['Conv'],
      export(t, ctx) {
        const { inputs } = t.node!;
        const conv = ctx.owner(inputs[1]);
        if (!(conv instanceof Conv2d)) throw new UnsupportedError('exportOnnx: a conv2d whose weight belongs to no Conv2d module.');
        const attributes = [
          ints('kernel_shape', [conv.kernelSize, conv.kernelSize]), ints('strides', [conv.stride, conv.stride]),
          ints('pads', Array(4).fill(conv.padding)), ints('dilations', [1, 1]), int('group', conv.groups),
        ];
        const bnOp = ctx.foldedBatchNorm(t);
        const bn = bnOp && ctx.owner(bnOp.node!.inputs[1]);
        if (bnOp && bn instanceof BatchNorm2d) {
          // The folded conv computes the BN's output: eval arithmetic with the BN's eps, values computed once.
          const wName = ctx.paramName(conv.weight, `${conv.path} weight`);
          const bName = conv.bias ? ctx.paramName(conv.bias, `${conv.path} bias`) : ctx.unique(`${conv.path}.bias`);
          let pending: ReturnType<typeof foldedConvValues> | null = null;
          const folded = () => (pending ??= foldedConvValues(conv, bn, bn.eps));
          ctx.initializer(wName, [...conv.weight.shape], async () => (await folded()).weight);
          ctx.initializer(bName, [conv.outChannels], async () => (await folded()).bias);
          ctx.emit(bnOp, 'Conv', [ctx.input(inputs[0]), wName, bName], attributes);
        } else {
          ctx.emit(t, 'Conv', [ctx.input(inputs[0]), ctx.param(inputs[1]), ...(inputs[2] ? [ctx.param(inputs[2])] : [])], attributes);
        }
      },
    },
  },
  linear: {
    name: 'linear', summary: 'Linear (y = x W^T + b)', channels: 'layer', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Gemm'], imports: ['Gemm', 'MatMul'],
      export(t, ctx) {
        const { inputs } = t.node!;
        ctx.emit(t, 'Gemm', [ctx.input(inputs[0]), ctx.param(inputs[1]), ...(inputs[2] ? [ctx.param(inputs[2])] : [])], [int('transB', 1)]);
      },
    },
  },
  batchNorm2d: {
    // A pruned (zero) channel leaves an unfolded BN as its shift beta - mean * gamma / sqrt(var + eps);
    // after folding (the BN is then the identity up to 1 / sqrt(1 + eps)) zero stays zero.
    name: 'batchNorm2d', summary: 'BatchNorm2d (folded into the conv it alone reads)', channels: 'layer', zeroStaysZero: false,
    onnx: {
      exportsAs: ['BatchNormalization', '(folded into Conv)'], imports: ['BatchNormalization'],
      export(t, ctx) {
        const bn = ctx.owner(t.node!.inputs[1]);
        if (!(bn instanceof BatchNorm2d)) throw new UnsupportedError('exportOnnx: a batch-norm whose weight belongs to no BatchNorm2d module.');
        ctx.emit(t, 'BatchNormalization', [ctx.input(t.node!.inputs[0]), ctx.param(bn.weight), ctx.param(bn.bias), ctx.param(bn.running_mean), ctx.param(bn.running_var)], [float('epsilon', bn.eps)]);
      },
    },
  },
  relu: {
    name: 'relu', summary: 'ReLU', channels: 'preserve', zeroStaysZero: true,
    onnx: { exportsAs: ['Relu'], imports: ['Relu'], export: (t, ctx) => ctx.emit(t, 'Relu', [ctx.input(t.node!.inputs[0])]) },
  },
  clip: {
    name: 'clip', summary: 'clamp to [min, max]: ReLU6, hardtanh', channels: 'preserve', zeroStaysZero: (a) => a.min <= 0 && a.max >= 0,
    onnx: {
      exportsAs: ['Clip'], imports: ['Clip'],
      export(t, ctx) {
        const { min, max } = t.node!.attrs!;
        // Opset 11+: the bounds are inputs; an infinite bound is left out ('').
        const bound = (v: number, which: string) => (Number.isFinite(v) ? ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.${which}`), [], async () => Float32Array.of(v)) : '');
        const inputs = [ctx.input(t.node!.inputs[0]), bound(min, 'min'), bound(max, 'max')];
        while (inputs[inputs.length - 1] === '') inputs.pop();
        ctx.emit(t, 'Clip', inputs);
      },
    },
  },
  hardSigmoid: {
    name: 'hardSigmoid', summary: 'max(0, min(1, alpha x + beta))', channels: 'preserve', zeroStaysZero: false,
    onnx: {
      exportsAs: ['HardSigmoid'], imports: ['HardSigmoid'],
      export: (t, ctx) => ctx.emit(t, 'HardSigmoid', [ctx.input(t.node!.inputs[0])], [float('alpha', t.node!.attrs!.alpha), float('beta', t.node!.attrs!.beta)]),
    },
  },
  hardSwish: {
    name: 'hardSwish', summary: 'x relu6(x + 3) / 6', channels: 'preserve', zeroStaysZero: true,
    onnx: {
      // ONNX HardSwish is opset 14; at 13 it is x * HardSigmoid(x, 1/6, 1/2), what PyTorch's exporter writes.
      exportsAs: ['HardSwish', 'HardSigmoid + Mul'], imports: ['HardSwish'],
      export(t, ctx) {
        const x = ctx.input(t.node!.inputs[0]);
        if (ctx.opset >= 14) return ctx.emit(t, 'HardSwish', [x]);
        ctx.emit(t, 'Mul', [x, ctx.intermediate(t, 'HardSigmoid', [x], [float('alpha', 1 / 6), float('beta', 0.5)])]);
      },
    },
  },
  sigmoid: {
    name: 'sigmoid', summary: 'logistic sigmoid (squeeze-excitation gates)', channels: 'preserve', zeroStaysZero: false,
    onnx: { exportsAs: ['Sigmoid'], imports: ['Sigmoid'], export: (t, ctx) => ctx.emit(t, 'Sigmoid', [ctx.input(t.node!.inputs[0])]) },
  },
  silu: {
    name: 'silu', summary: 'x sigmoid(x) (swish)', channels: 'preserve', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Sigmoid + Mul'], imports: [],
      export(t, ctx) {
        const x = ctx.input(t.node!.inputs[0]);
        ctx.emit(t, 'Mul', [x, ctx.intermediate(t, 'Sigmoid', [x])]);
      },
    },
  },
  mul: {
    name: 'mul', summary: 'elementwise product, broadcasting (squeeze-excitation x * gate[N, C, 1, 1])', channels: 'merge', zeroStaysZero: true,
    onnx: { exportsAs: ['Mul'], imports: ['Mul'], export: (t, ctx) => ctx.emit(t, 'Mul', t.node!.inputs.map((i) => ctx.input(i))) },
  },
  concat: {
    name: 'concat', summary: 'concatenation (DenseNet, Inception, SqueezeNet fire modules)', channels: 'concat', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Concat'], imports: ['Concat'],
      export: (t, ctx) => ctx.emit(t, 'Concat', t.node!.inputs.map((i) => ctx.input(i)), [int('axis', t.node!.attrs!.axis)]),
    },
  },
  slice: {
    name: 'slice', summary: 'a contiguous range along one axis (split, chunk)', channels: 'slice', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Slice'], imports: ['Slice', 'Split'],
      export(t, ctx) {
        const { axis, start, end } = t.node!.attrs!;
        const int64 = (which: string, v: number) => ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.${which}`), [1], async () => BigInt64Array.of(BigInt(v)), DataType.INT64);
        ctx.emit(t, 'Slice', [ctx.input(t.node!.inputs[0]), int64('starts', start), int64('ends', end), int64('axes', axis)]);
      },
    },
  },
  scale: {
    name: 'scale', summary: 'multiplication by a constant scalar', channels: 'preserve', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Mul'], imports: ['Mul'],
      export(t, ctx) {
        const alpha = t.node!.attrs?.alpha;
        if (alpha === undefined) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: the scale op recorded no factor.`);
        const factor = Float32Array.of(alpha);
        ctx.emit(t, 'Mul', [ctx.input(t.node!.inputs[0]), ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.factor`), [], async () => factor)]);
      },
    },
  },
  add: {
    name: 'add', summary: 'elementwise add of two tensors (residual connections)', channels: 'merge', zeroStaysZero: true,
    onnx: { exportsAs: ['Add'], imports: ['Add'], export: (t, ctx) => ctx.emit(t, 'Add', t.node!.inputs.map((i) => ctx.input(i))) },
  },
  maxPool2d: {
    name: 'maxPool2d', summary: 'max pooling (square kernel, stride, padding)', channels: 'preserve', zeroStaysZero: true,
    onnx: { exportsAs: ['MaxPool'], imports: ['MaxPool'], export: (t, ctx) => exportPool(t, ctx, 'MaxPool') },
  },
  avgPool2d: {
    name: 'avgPool2d', summary: 'average pooling (square kernel, stride)', channels: 'preserve', zeroStaysZero: true,
    onnx: { exportsAs: ['AveragePool', 'GlobalAveragePool'], imports: ['AveragePool'], export: (t, ctx) => exportPool(t, ctx, 'AveragePool') },
  },
  adaptiveAvgPool2d: {
    name: 'adaptiveAvgPool2d', summary: 'adaptive average pooling (PyTorch bins; 1 = global)', channels: 'preserve', zeroStaysZero: true,
    onnx: {
      exportsAs: ['GlobalAveragePool', 'AveragePool'], imports: ['GlobalAveragePool'],
      export(t, ctx) {
        const a = t.node!.inputs[0];
        const [, , H, W] = a.shape;
        const [oh, ow] = [t.shape[2], t.shape[3]];
        if (oh === 1 && ow === 1) ctx.emit(t, 'GlobalAveragePool', [ctx.input(a)]);
        else if (H % oh === 0 && W % ow === 0) ctx.emit(t, 'AveragePool', [ctx.input(a)], [ints('kernel_shape', [H / oh, W / ow]), ints('strides', [H / oh, W / ow])]);
        else throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: adaptive average pooling ${H}x${W} -> ${oh}x${ow} has uneven bins, which ONNX pooling cannot express.`);
      },
    },
  },
  reshape: {
    name: 'reshape', summary: 'reshape keeping the batch (flatten)', channels: 'flatten', zeroStaysZero: true,
    onnx: {
      exportsAs: ['Flatten', 'Reshape'], imports: ['Flatten', 'Reshape'],
      export(t, ctx) {
        const a = t.node!.inputs[0];
        if (t.shape[0] !== a.shape[0]) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: a reshape [${a.shape}] -> [${t.shape}] that mixes the batch dimension.`);
        const N = t.shape.length;
        if (N === 2) ctx.emit(t, 'Flatten', [ctx.input(a)], [int('axis', 1)]);
        else {
          const target = BigInt64Array.from([0n, ...t.shape.slice(1).map(BigInt)]); // 0: copy the (symbolic) batch
          ctx.emit(t, 'Reshape', [ctx.input(a), ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.shape`), [N], async () => target, DataType.INT64)]);
        }
      },
    },
  },
  sum: noChannelRule('sum', 'sum of all elements (losses)'),
  mean: noChannelRule('mean', 'mean of all elements (losses)'),
  matmul: noChannelRule('matmul', 'matrix product of two activations'),
  crossEntropy: noChannelRule('crossEntropy', 'softmax cross-entropy loss'),
};

function exportPool(t: Tensor, ctx: OnnxExportContext, opType: 'MaxPool' | 'AveragePool'): void {
  const { op, inputs: [a], attrs } = t.node!;
  if (!attrs) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: the ${op} op recorded no geometry.`);
  const { kernel, stride, padding = 0 } = attrs;
  const [, , H, W] = a.shape;
  if (opType === 'AveragePool' && padding) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: padded average pooling is not supported.`);
  if (opType === 'AveragePool' && kernel === H && kernel === W && t.shape[2] === 1 && t.shape[3] === 1) ctx.emit(t, 'GlobalAveragePool', [ctx.input(a)]);
  else ctx.emit(t, opType, [ctx.input(a)], [ints('kernel_shape', [kernel, kernel]), ints('strides', [stride, stride]), ints('pads', Array(4).fill(padding))]);
}

const OPS = new Map<string, OpSpec>(Object.values(BUILTIN_OPS).map((s) => [s.name, s]));

/**
 * Adds (or replaces) an op's spec: for an op recorded with `autograd.customOp(name, ...)` from outside
 * the package, or to change how a built-in op is treated.
 */
export function registerOp(spec: OpSpec): void {
  if (!spec.name) throw new ArgumentError('registerOp: the spec needs a name.');
  if (!(spec.channels in CHANNEL_RULES)) throw new ArgumentError(`registerOp: "${spec.name}": unknown channel rule "${spec.channels}"; one of ${Object.keys(CHANNEL_RULES).join(', ')}.`);
  OPS.set(spec.name, spec);
}

/** The spec of a recorded op, or undefined for an op nobody registered. */
export function opSpec(name: string): OpSpec | undefined {
  return OPS.get(name);
}

/** Every registered op spec, built-ins first. */
export function opSpecs(): OpSpec[] {
  return [...OPS.values()];
}
