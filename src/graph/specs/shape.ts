/** Op specs of the ops that move data without arithmetic: reshape (flatten), concat, slice. */
import { UnsupportedError } from '../../errors.js';
import { ChannelSlice } from '../../nn/layers.js';
import { describeDim, dimLeaves, evalDim, resolveDims, type Dim } from '../../onnx/prepass.js';
import { DataType } from '../../onnx/proto.js';
import * as ag from '../../tensor/autograd.js';
import { int, type OnnxImportContext, type OpSpec } from '../op-spec.js';

export const reshape: OpSpec = {
  name: 'reshape', summary: 'reshape keeping the batch (flatten)', channels: 'flatten', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Flatten', 'Reshape'],
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
    importers: {
      Flatten(ctx) {
        ctx.allowOnly(['axis']);
        if (ctx.int('axis', 1) !== 1) throw new UnsupportedError(`${ctx.where}: axis=${ctx.int('axis', 1)}; only axis=1 (keep the batch) is supported.`);
        ctx.step(([x]) => ag.flatten(x));
      },
      Reshape(ctx) {
        // A flatten [N, C, H, W] -> [N, C*H*W] written any way exporters write it: [0, -1], [-1, features],
        // the static batch [2, -1], or x.view(x.size(0), -1) (its shape chain folded by the pre-pass).
        ctx.allowOnly(['allowzero']);
        if (ctx.int('allowzero', 0) !== 0) throw new UnsupportedError(`${ctx.where}: allowzero=1 is not supported.`);
        const shapeName = ctx.inputs[1];
        const constant = ctx.constant(shapeName);
        const target: Dim[] | undefined = ctx.shape(shapeName)?.dims ?? (constant ? Array.from(constant.values) : undefined);
        if (!target) throw new UnsupportedError(`${ctx.where}: the target shape "${shapeName}" is computed from values other than shapes; only a constant or shape-derived target is supported.`);
        const { staticBatch } = ctx;
        const isBatch = (d: Dim) => d === 0 || d === staticBatch || (typeof d === 'object' && !('op' in d) && d.axis === 0);
        const describe = target.map(describeDim).join(', ');
        if (target.length !== 2 || !(isBatch(target[0]) || (target[0] === -1 && typeof target[1] === 'number' && target[1] > 0))) {
          throw new UnsupportedError(`${ctx.where}: reshape to [${describe}]; only a flatten to [batch, features] is supported.`);
        }
        const symbolic = [...new Set(target.flatMap((d) => dimLeaves(d).map((l) => l.of)))];
        ctx.step((values) => {
          const x = values[0];
          const valueShape = (name: string) => values[1 + symbolic.indexOf(name)].shape;
          const [first, second] = resolveDims(target, valueShape);
          const features = x.size / x.shape[0];
          // The static batch of a fixed-batch export means "the batch" (tracing runs one sample).
          const batchOk = first === 0 || first === x.shape[0] || (staticBatch !== undefined && first === staticBatch) || (first === -1 && second === features);
          if (!batchOk || !(second === -1 || second === features)) throw new UnsupportedError(`${ctx.where}: reshape of [${x.shape}] to [${first}, ${second}] is not a flatten to [${x.shape[0]}, ${features}].`);
          return ag.flatten(x);
        }, [ctx.inputs[0], ...symbolic]);
      },
    },
  },
};

export const concat: OpSpec = {
  name: 'concat', summary: 'concatenation (DenseNet, Inception, SqueezeNet fire modules)', channels: 'concat', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Concat'],
    export: (t, ctx) => ctx.emit(t, 'Concat', t.node!.inputs.map((i) => ctx.input(i)), [int('axis', t.node!.attrs!.axis)]),
    importers: {
      Concat(ctx) {
        // Activations (a Concat of shapes was folded by the pre-pass).
        ctx.allowOnly(['axis']);
        const constant = ctx.inputs.find((i) => ctx.constant(i) || ctx.shape(i));
        if (constant !== undefined) throw new UnsupportedError(`${ctx.where}: concatenating the constant "${constant}" with activations is not supported.`);
        const axis = ctx.int('axis', 1);
        ctx.step((xs) => (xs.length === 1 ? xs[0] : ag.concat(xs, axis)), ctx.inputs);
      },
    },
  },
};

export const slice: OpSpec = {
  name: 'slice', summary: 'a contiguous range along one axis (split, chunk)', channels: 'slice', zeroStaysZero: true,
  onnx: {
    exportsAs: ['Slice'],
    export(t, ctx) {
      const { axis, start, end } = t.node!.attrs!;
      const int64 = (which: string, v: number) => ctx.initializer(ctx.unique(`${ctx.nameOf(t)}.${which}`), [1], async () => BigInt64Array.of(BigInt(v)), DataType.INT64);
      ctx.emit(t, 'Slice', [ctx.input(t.node!.inputs[0]), int64('starts', start), int64('ends', end), int64('axes', axis)]);
    },
    // Each cut is a ChannelSlice module, so pruning the sliced channels moves its bounds.
    importers: {
      Slice(ctx) {
        ctx.allowOnly(ctx.opset < 10 ? ['starts', 'ends', 'axes'] : []);
        const list = (i: number, attr: string) => (ctx.opset < 10 ? ctx.ints(attr) : constantInts(ctx, i, attr));
        // Bounds may be shape arithmetic on the sliced axis itself (x.chunk's (C + 1) / 2), read at the first run.
        const bounds = (i: number, attr: string): Dim[] | undefined => (ctx.opset >= 10 && ctx.shape(ctx.node.input?.[i] ?? '')?.dims) || list(i, attr);
        const [starts, ends, steps] = [bounds(1, 'starts') ?? [], bounds(2, 'ends') ?? [], ctx.opset < 10 ? undefined : constantInts(ctx, 4, 'steps')];
        const axes = list(3, 'axes') ?? starts.map((_, i) => i);
        if (steps?.some((s) => s !== 1)) throw new UnsupportedError(`${ctx.where}: steps [${steps}]; only step 1 is supported.`);
        if (starts.length !== ends.length || axes.length !== starts.length) throw new UnsupportedError(`${ctx.where}: starts, ends and axes of different lengths.`);
        const cuts = axes.map((axis, i) => {
          if (axis === 0) throw new UnsupportedError(`${ctx.where}: slicing the batch axis is not supported.`);
          for (const leaf of [starts[i], ends[i]].flatMap(dimLeaves)) {
            if (leaf.of !== ctx.inputs[0] || leaf.axis !== axis) {
              throw new UnsupportedError(`${ctx.where}: bounds [${describeDim(starts[i])}, ${describeDim(ends[i])}) read ${describeDim(leaf)}; only constants and the sliced axis's own size are supported.`);
            }
          }
          const at = (d: Dim, width: number) => evalDim(d, () => width);
          return ctx.addLayer(new ChannelSlice((width) => sliceBounds(ctx.where, at(starts[i], width), at(ends[i], width), width), axis));
        });
        ctx.step(([x]) => cuts.reduce((y, cut) => cut.call(y), x));
      },
      Split(ctx) {
        // The sizes: attribute before opset 13, optional input after; none (or num_outputs, opset 18): equal parts.
        ctx.allowOnly(ctx.opset < 13 ? ['axis', 'split'] : ['axis', 'num_outputs']);
        const axis = ctx.int('axis', 0);
        if (axis === 0) throw new UnsupportedError(`${ctx.where}: splitting the batch axis is not supported.`);
        const outputs = ctx.node.output ?? [];
        const sizes = ctx.opset < 13 ? ctx.ints('split') : constantInts(ctx, 1, 'split');
        if (sizes && sizes.length !== outputs.length) throw new UnsupportedError(`${ctx.where}: ${sizes.length} split sizes for ${outputs.length} outputs.`);
        outputs.forEach((output, i) => {
          if (!output || !ctx.readers(output)) return;
          const bounds = (width: number): [number, number] => {
            // Equal parts as ONNX's num_outputs: ceil(width / parts) each, the last one what is left.
            const part = sizes ?? Array.from({ length: outputs.length }, (_, j) => Math.min(Math.ceil(width / outputs.length), Math.max(0, width - j * Math.ceil(width / outputs.length))));
            const start = part.slice(0, i).reduce((a, b) => a + b, 0);
            if (part.reduce((a, b) => a + b, 0) !== width || part[i] < 1) throw new UnsupportedError(`${ctx.where}: split sizes [${part}] do not cover the ${width} channels of axis ${axis}.`);
            return [start, start + part[i]];
          };
          const cut = ctx.addLayer(new ChannelSlice(bounds, axis));
          ctx.step(([x]) => cut.call(x), ctx.inputs.slice(0, 1), output);
        });
      },
    },
  },
};

/** Input i of a node as constant integers, or undefined when the optional input is left out. */
function constantInts(ctx: OnnxImportContext, i: number, role: string): number[] | undefined {
  const name = ctx.node.input?.[i];
  if (!name) return undefined;
  const c = ctx.constant(name);
  if (!c) throw new UnsupportedError(`${ctx.where}: its ${role} "${name}" must be a constant.`);
  return Array.from(c.values, Number);
}

/** ONNX Slice bounds (step 1) on a width: negative indices count from the end, both clamped to [0, width]. */
function sliceBounds(where: string, start: number, end: number, width: number): [number, number] {
  const clamp = (v: number) => Math.min(width, Math.max(0, v < 0 ? v + width : v));
  const [s, e] = [clamp(start), clamp(end)];
  if (e <= s) throw new UnsupportedError(`${where}: the slice [${start}, ${end}) of ${width} channels is empty.`);
  return [s, e];
}
