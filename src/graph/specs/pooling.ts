/** Op specs of pooling: maxPool2d, avgPool2d, adaptiveAvgPool2d. */
import { UnsupportedError } from '../../errors.js';
import { AdaptiveAvgPool2d, AvgPool2d, MaxPool2d } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { int, ints, type OnnxExportContext, type OpSpec } from '../op-spec.js';
import { poolAttrs } from './attrs.js';

function exportPool(t: Tensor, ctx: OnnxExportContext, opType: 'MaxPool' | 'AveragePool'): void {
  const { op, inputs: [a], attrs } = t.node!;
  if (!attrs) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: the ${op} op recorded no geometry.`);
  const { kernel, stride, padding = 0 } = attrs;
  const ceil = attrs.ceilMode ? [int('ceil_mode', 1)] : [];
  // PyTorch's avg_pool2d counts the zero padding (count_include_pad=True); ONNX's default does not.
  const countPad = opType === 'AveragePool' && padding && attrs.countIncludePad !== 0 ? [int('count_include_pad', 1)] : [];
  const [, , H, W] = a.shape;
  if (opType === 'AveragePool' && !padding && kernel === H && kernel === W && t.shape[2] === 1 && t.shape[3] === 1) ctx.emit(t, 'GlobalAveragePool', [ctx.input(a)]);
  else ctx.emit(t, opType, [ctx.input(a)], [ints('kernel_shape', [kernel, kernel]), ints('strides', [stride, stride]), ints('pads', Array(4).fill(padding)), ...ceil, ...countPad]);
}

export const maxPool2d: OpSpec = {
  name: 'maxPool2d', summary: 'max pooling (square kernel, stride, padding, ceil_mode)', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['MaxPool'],
    export: (t, ctx) => exportPool(t, ctx, 'MaxPool'),
    importers: {
      MaxPool(ctx) {
        ctx.allowOnly(['kernel_shape', 'strides', 'pads', 'dilations', 'ceil_mode', 'auto_pad', 'storage_order']);
        const pool = poolAttrs(ctx);
        ctx.layerStep(ctx.addLayer(new MaxPool2d(pool.kernel, pool.stride, pool.padding, pool.ceilMode)));
      },
    },
  },
};

export const avgPool2d: OpSpec = {
  name: 'avgPool2d', summary: 'average pooling (square kernel, stride, padding, ceil_mode)', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['AveragePool', 'GlobalAveragePool'],
    export: (t, ctx) => exportPool(t, ctx, 'AveragePool'),
    importers: {
      AveragePool(ctx) {
        ctx.allowOnly(['kernel_shape', 'strides', 'pads', 'ceil_mode', 'auto_pad', 'count_include_pad']);
        const pool = poolAttrs(ctx);
        // ONNX's count_include_pad defaults to 0, PyTorch's to True (which it writes as a Pad node instead).
        ctx.layerStep(ctx.addLayer(new AvgPool2d(pool.kernel, pool.stride, pool.padding, pool.ceilMode, ctx.int('count_include_pad', 0) === 1)));
      },
    },
  },
};

export const adaptiveAvgPool2d: OpSpec = {
  name: 'adaptiveAvgPool2d', summary: 'adaptive average pooling (PyTorch bins; 1 = global)', channels: 'preserve', zeroStaysZero: true,
  onnx: {
    exportsAs: ['GlobalAveragePool', 'AveragePool'],
    export(t, ctx) {
      const a = t.node!.inputs[0];
      const [, , H, W] = a.shape;
      const [oh, ow] = [t.shape[2], t.shape[3]];
      if (oh === 1 && ow === 1) ctx.emit(t, 'GlobalAveragePool', [ctx.input(a)]);
      else if (H % oh === 0 && W % ow === 0) ctx.emit(t, 'AveragePool', [ctx.input(a)], [ints('kernel_shape', [H / oh, W / ow]), ints('strides', [H / oh, W / ow])]);
      else throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: adaptive average pooling ${H}x${W} -> ${oh}x${ow} has uneven bins, which ONNX pooling cannot express.`);
    },
    importers: {
      GlobalAveragePool(ctx) {
        ctx.allowOnly([]);
        ctx.layerStep(ctx.addLayer(new AdaptiveAvgPool2d(1)));
      },
    },
  },
};
