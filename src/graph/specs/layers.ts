/** Op specs of the layer ops: conv2d, linear, batchNorm2d (their channel rule is the layer kind's). */
import { DataError, UnsupportedError } from '../../errors.js';
import { BatchNorm2d, Conv2d, Linear } from '../../nn/layers.js';
import type { ConstTensor } from '../../onnx/prepass.js';
import { assign } from '../../tensor/tensor.js';
import { float, int, ints, type OnnxImportContext, type OpSpec } from '../op-spec.js';
import { foldedConvValues } from '../pairing.js';
import { notAutoPad } from './attrs.js';

export const conv2d: OpSpec = {
  name: 'conv2d', summary: 'Conv2d: any kernel, strides, pads, dilations, groups', channels: 'layer', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Conv'],
    export(t, ctx) {
      const { inputs } = t.node!;
      const conv = ctx.owner(inputs[1]);
      if (!(conv instanceof Conv2d)) throw new UnsupportedError('exportOnnx: a conv2d whose weight belongs to no Conv2d module.');
      const attributes = [
        ints('kernel_shape', conv.kernelShape), ints('strides', conv.strides),
        ints('pads', conv.pads), ints('dilations', conv.dilations), int('group', conv.groups),
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
    importers: {
      Conv(ctx) {
        // Any 2-D geometry PyTorch writes: kernels 1x7 / 7x1, strides, ONNX's [top, left, bottom, right] pads,
        // dilations, groups (depthwise, ResNeXt, RegNet).
        ctx.allowOnly(['kernel_shape', 'strides', 'pads', 'dilations', 'group', 'auto_pad']);
        const w = ctx.weight(1, 'weight');
        if (w.dims.length !== 4) throw new UnsupportedError(`${ctx.where}: weight shape [${w.dims}]; 2-D convolutions are supported.`);
        notAutoPad(ctx);
        const group = ctx.int('group', 1);
        const [outC, inPerGroup, kh, kw] = w.dims;
        const kernelShape = ctx.ints('kernel_shape');
        if (kernelShape && kernelShape.join() !== `${kh},${kw}`) throw new DataError(`${ctx.where}: kernel_shape=[${kernelShape}] does not match the weight's [${w.dims}].`);
        const pair = (name: string) => {
          const v = ctx.ints(name) ?? [1, 1];
          if (v.length !== 2) throw new UnsupportedError(`${ctx.where}: ${name}=[${v}]; two values (height, width) are expected.`);
          return v as [number, number];
        };
        const pads = ctx.ints('pads') ?? [0, 0, 0, 0];
        if (pads.length !== 4) throw new UnsupportedError(`${ctx.where}: pads=[${pads}]; four values are expected.`);
        const bias = ctx.inputs[2] !== undefined ? ctx.weight(2, 'bias') : null;
        const conv = ctx.addLayer(new Conv2d(inPerGroup * group, outC, [kh, kw], pair('strides'), pads as [number, number, number, number], !!bias, group, pair('dilations')));
        assign(conv.weight, w.values);
        if (bias && conv.bias) assign(conv.bias, bias.values);
        ctx.layerStep(conv);
      },
    },
  },
};

/** y = alpha * x W' + beta * c as a Linear (weight [out, in]); `w` is [out, in] when transB, else [in, out]. */
function linearLayer(ctx: OnnxImportContext, w: ConstTensor, c: ConstTensor | null, transB: boolean, alpha: number, beta: number): Linear {
  if (w.dims.length !== 2) throw new UnsupportedError(`${ctx.where}: weight shape [${w.dims}]; a 2-D weight is supported.`);
  const [outF, inF] = transB ? w.dims : [w.dims[1], w.dims[0]];
  if (c && c.values.length !== outF) throw new UnsupportedError(`${ctx.where}: bias shape [${c.dims}]; a bias of ${outF} values (one per output) is supported.`);
  const weight = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) weight[o * inF + i] = alpha * w.values[transB ? o * inF + i : i * outF + o];
  const linear = ctx.addLayer(new Linear(inF, outF, !!c));
  assign(linear.weight, weight);
  if (c && linear.bias) assign(linear.bias, Float32Array.from(c.values, (v) => beta * v));
  return linear;
}

export const linear: OpSpec = {
  name: 'linear', summary: 'Linear (y = x W^T + b)', channels: 'layer', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Gemm'],
    export(t, ctx) {
      const { inputs } = t.node!;
      ctx.emit(t, 'Gemm', [ctx.input(inputs[0]), ctx.param(inputs[1]), ...(inputs[2] ? [ctx.param(inputs[2])] : [])], [int('transB', 1)]);
    },
    importers: {
      Gemm(ctx) {
        ctx.allowOnly(['alpha', 'beta', 'transA', 'transB']);
        if (ctx.int('transA', 0) !== 0) throw new UnsupportedError(`${ctx.where}: transA=1 is not supported.`);
        const w = ctx.weight(1, 'B (weight)');
        const c = ctx.inputs[2] !== undefined ? ctx.weight(2, 'C (bias)') : null;
        ctx.layerStep(linearLayer(ctx, w, c, ctx.int('transB', 0) === 1, ctx.float('alpha', 1), ctx.float('beta', 1)));
      },
      MatMul(ctx) {
        const w = ctx.weight(1, 'B (weight)');
        // MatMul followed by an Add of a bias vector is one Linear (what many exporters write for Gemm).
        const out = ctx.node.output![0];
        const add = ctx.readers(out) === 1 ? ctx.readersOf(out).find((n) => n.op_type === 'Add') : undefined;
        const biasName = add?.input?.find((i) => i !== out);
        const bias = biasName !== undefined ? ctx.constant(biasName) ?? null : null;
        const layer = linearLayer(ctx, w, bias, false, 1, 1);
        if (bias && add) {
          ctx.skip(add);
          ctx.step(([x]) => layer.call(x), ctx.inputs.slice(0, 1), add.output![0]);
        } else ctx.layerStep(layer);
      },
    },
  },
};

export const batchNorm2d: OpSpec = {
  // A pruned (zero) channel leaves an unfolded BN as its shift beta - mean * gamma / sqrt(var + eps);
  // after folding (the BN is then the identity up to 1 / sqrt(1 + eps)) zero stays zero.
  name: 'batchNorm2d', summary: 'BatchNorm2d (folded into the conv it alone reads)', channels: 'layer', zeroStaysZero: false,
  onnx: {
    exportsAs: ['BatchNormalization', '(folded into Conv)'],
    export(t, ctx) {
      const bn = ctx.owner(t.node!.inputs[1]);
      if (!(bn instanceof BatchNorm2d)) throw new UnsupportedError('exportOnnx: a batch-norm whose weight belongs to no BatchNorm2d module.');
      ctx.emit(t, 'BatchNormalization', [ctx.input(t.node!.inputs[0]), ctx.param(bn.weight), ctx.param(bn.bias), ctx.param(bn.running_mean), ctx.param(bn.running_var)], [float('epsilon', bn.eps)]);
    },
    importers: {
      BatchNormalization(ctx) {
        ctx.allowOnly(['epsilon', 'momentum', 'spatial', 'training_mode', 'is_test']);
        // Training mode: opset 14+ says training_mode=1; opsets up to 13 ask for the running statistics as
        // extra outputs (PyTorch writes all five). Either way the graph normalises with batch statistics.
        const statsOutputs = (ctx.node.output ?? []).slice(1).filter((o) => o !== '');
        if (ctx.int('training_mode', 0) !== 0 || statsOutputs.length) {
          throw new UnsupportedError(`${ctx.where}: a training-mode batch norm (${ctx.int('training_mode', 0) !== 0 ? 'training_mode=1' : `statistics outputs ${statsOutputs.map((o) => `"${o}"`).join(', ')}`}) is not supported; export the model in eval mode (model.eval(), training=TrainingMode.EVAL).`);
        }
        if (ctx.int('spatial', 1) !== 1) throw new UnsupportedError(`${ctx.where}: spatial=0 is not supported.`);
        const [scale, b, mean, variance] = [1, 2, 3, 4].map((i, j) => ctx.weight(i, ['scale', 'B', 'mean', 'var'][j]));
        const bn = ctx.addLayer(new BatchNorm2d(scale.values.length, ctx.float('epsilon', 1e-5)));
        assign(bn.weight, scale.values);
        assign(bn.bias, b.values);
        assign(bn.running_mean, mean.values);
        assign(bn.running_var, variance.values);
        ctx.layerStep(bn);
      },
    },
  },
};
