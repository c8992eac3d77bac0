/**
 * ONNX export of any model the engine runs, by tracing its eval-mode autograd graph on an example input
 * (so user-built models export as well as VGG and ResNet). Each recorded op becomes ONNX nodes:
 *
 *   conv2d (+ the eval batch-norm that alone reads it, folded)  Conv
 *   batchNorm2d (not after a conv)                               BatchNormalization
 *   linear                                                       Gemm (transB = 1)
 *   relu / add / scale                                           Relu / Add / Mul
 *   maxPool2d / avgPool2d                                        MaxPool / AveragePool (GlobalAveragePool when it
 *                                                                covers the whole map)
 *   adaptiveAvgPool2d                                            GlobalAveragePool (1x1), AveragePool (even bins)
 *   reshape keeping the batch                                    Flatten (rank 2) or Reshape [0, ...]
 *
 * The batch dimension is symbolic ("N"); weights are initializers named as in the model's state_dict.
 * BN folding here uses eval-mode arithmetic, W' = W * gamma / sqrt(var + eps) and
 * b' = (b - mean) * gamma / sqrt(var + eps) + beta, so the ONNX model computes what the engine computes.
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import { BatchNorm2d, Conv2d } from '../nn/layers.js';
import { addForwardHook, type Module } from '../nn/module.js';
import { foldedConvValues } from '../prune/fold.js';
import { topologicalOps, weightOwners } from '../prune/graph.js';
import { isRecording } from '../tensor/autograd.js';
import { fromArray, tidy, type Tensor } from '../tensor/tensor.js';
import { AttributeType, DataType, encodeModel, type Attribute, type Node, type Tensor as TensorProto } from './proto.js';

export interface OnnxExportOptions {
  /** Example input [channels, height, width] (the batch dimension is left symbolic). */
  inputShape: [number, number, number];
  /** Default opset 13; 17 is also valid for every op written here. */
  opset?: 13 | 17;
  /** Extra metadata_props (e.g. the pruning run's settings). */
  metadata?: Record<string, string>;
  graphName?: string;
}

/** An initializer whose values are read (and folded) after the trace. */
interface PendingInitializer {
  name: string;
  dims: number[];
  dataType?: number;
  values: () => Promise<Float32Array | BigInt64Array>;
}

const ints = (name: string, values: number[]): Attribute => ({ name, type: AttributeType.INTS, ints: values });
const int = (name: string, value: number): Attribute => ({ name, type: AttributeType.INT, i: value });
const float = (name: string, value: number): Attribute => ({ name, type: AttributeType.FLOAT, f: value });

/** Serialises `model` (in eval mode) as an ONNX ModelProto. */
export async function exportOnnx(model: Module, o: OnnxExportOptions): Promise<Uint8Array> {
  const [c, h, w] = o.inputShape;
  if (![c, h, w].every((d) => Number.isInteger(d) && d > 0)) throw new ArgumentError(`exportOnnx: inputShape must be [c, h, w] of positive integers, got [${o.inputShape}].`);
  if (!isRecording()) throw new ArgumentError('exportOnnx traces the model through autograd: do not call it inside noGrad.');
  const opset = o.opset ?? 13;
  const stateName = new Map(model.stateTensors().map(([n, t]) => [t, n]));
  const owner = weightOwners(model);
  const nodes: Node[] = [];
  const initializers: PendingInitializer[] = [];
  const used = new Set<string>(['input', 'output', ...stateName.values()]);
  const unique = (base: string) => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  const paramName = (t: Tensor, role: string) => {
    const n = stateName.get(t);
    if (n === undefined) throw new UnsupportedError(`exportOnnx: the ${role} is a tensor that is neither a parameter nor a buffer of the model.`);
    return n;
  };
  const fromParam = (t: Tensor, name = paramName(t, 'weight')) => {
    if (!initializers.some((i) => i.name === name)) initializers.push({ name, dims: [...t.shape], values: () => t.data() });
    return name;
  };

  const outputDims: number[] = [];
  const wasTraining = model.training;
  model.eval();
  const layerOf = new Map<Tensor, string>(); // output tensor -> innermost module path (for node names)
  const removeHook = addForwardHook((_m, _x, y, path) => {
    if (path && !layerOf.has(y)) layerOf.set(y, path);
  });
  try {
    tidy(() => {
      // Batch 2, not 1: a reshape that folds the batch into the features then shows in the shapes.
      const x = fromArray(new Float32Array(2 * c * h * w), [2, c, h, w]);
      const y = model.call(x);
      if (!y.node) throw new UnsupportedError('exportOnnx: the model output does not depend on any parameter.');
      const ops = topologicalOps(y);
      const readers = new Map<Tensor, Tensor[]>();
      for (const t of ops) for (const i of t.node!.inputs) readers.set(i, [...(readers.get(i) ?? []), t]);
      const valueName = new Map<Tensor, string>([[x, 'input'], [y, 'output']]);
      const folded = new Set<Tensor>();
      let counter = 0;
      const nameFor = (t: Tensor) => layerOf.get(t) ?? `${t.node!.op}_${counter++}`;
      const input = (t: Tensor) => {
        const name = valueName.get(t);
        if (name === undefined) throw new UnsupportedError(`exportOnnx: an op reads a tensor of shape [${t.shape}] created inside forward (not the input, a parameter or another op's output).`);
        return name;
      };
      const emit = (t: Tensor, opType: string, inputs: string[], attribute: Attribute[] = []) => {
        const name = unique(nameFor(t));
        if (!valueName.has(t)) valueName.set(t, unique(`${name}_out`));
        nodes.push({ name, op_type: opType, input: inputs, output: [valueName.get(t)!], attribute });
      };

      for (const t of ops) {
        if (folded.has(t)) continue;
        const { op, inputs, attrs } = t.node!;
        const [a] = inputs;
        const N = t.shape.length;
        if (op === 'conv2d') {
          const conv = owner.get(inputs[1]);
          if (!(conv instanceof Conv2d)) throw new UnsupportedError('exportOnnx: a conv2d whose weight belongs to no Conv2d module.');
          // Fold the eval batch-norm that is the conv's only reader (nothing else sees the unnormalised map).
          const next = readers.get(t);
          const bnOut = next?.length === 1 && next[0].node!.op === 'batchNorm2d' && next[0].node!.inputs[0] === t ? next[0] : undefined;
          const bn = bnOut && owner.get(bnOut.node!.inputs[1]);
          const attributes = [
            ints('kernel_shape', [conv.kernelSize, conv.kernelSize]), ints('strides', [conv.stride, conv.stride]),
            ints('pads', Array(4).fill(conv.padding)), ints('dilations', [1, 1]), int('group', conv.groups),
          ];
          if (bnOut && bn instanceof BatchNorm2d) {
            folded.add(bnOut);
            const wName = paramName(conv.weight, `${conv.path} weight`);
            const bName = conv.bias ? paramName(conv.bias, `${conv.path} bias`) : unique(`${conv.path}.bias`);
            initializers.push(...foldedConv(conv, bn, wName, bName));
            layerOf.set(bnOut, layerOf.get(t) ?? conv.path);
            emit(bnOut, 'Conv', [input(a), wName, bName], attributes);
          } else {
            emit(t, 'Conv', [input(a), fromParam(inputs[1]), ...(inputs[2] ? [fromParam(inputs[2])] : [])], attributes);
          }
        } else if (op === 'batchNorm2d') {
          const bn = owner.get(inputs[1]);
          if (!(bn instanceof BatchNorm2d)) throw new UnsupportedError('exportOnnx: a batch-norm whose weight belongs to no BatchNorm2d module.');
          emit(t, 'BatchNormalization', [input(a), fromParam(bn.weight), fromParam(bn.bias), fromParam(bn.running_mean), fromParam(bn.running_var)], [float('epsilon', bn.eps)]);
        } else if (op === 'linear') {
          emit(t, 'Gemm', [input(a), fromParam(inputs[1]), ...(inputs[2] ? [fromParam(inputs[2])] : [])], [int('transB', 1)]);
        } else if (op === 'relu') {
          emit(t, 'Relu', [input(a)]);
        } else if (op === 'add') {
          emit(t, 'Add', [input(a), input(inputs[1])]);
        } else if (op === 'scale' && attrs?.alpha !== undefined) {
          const factorName = unique(`${nameFor(t)}.factor`);
          const factor = Float32Array.of(attrs.alpha);
          initializers.push({ name: factorName, dims: [], values: async () => factor });
          emit(t, 'Mul', [input(a), factorName]);
        } else if (op === 'maxPool2d' || op === 'avgPool2d') {
          if (!attrs) throw new UnsupportedError(`exportOnnx: ${nameFor(t)}: the ${op} op recorded no geometry.`);
          const { kernel, stride, padding = 0 } = attrs;
          const [, , H, W] = a.shape;
          if (op === 'avgPool2d' && padding) throw new UnsupportedError(`exportOnnx: ${nameFor(t)}: padded average pooling is not supported.`);
          if (op === 'avgPool2d' && kernel === H && kernel === W && t.shape[2] === 1 && t.shape[3] === 1) emit(t, 'GlobalAveragePool', [input(a)]);
          else emit(t, op === 'maxPool2d' ? 'MaxPool' : 'AveragePool', [input(a)], [ints('kernel_shape', [kernel, kernel]), ints('strides', [stride, stride]), ints('pads', Array(4).fill(padding))]);
        } else if (op === 'adaptiveAvgPool2d') {
          const [, , H, W] = a.shape;
          const [oh, ow] = [t.shape[2], t.shape[3]];
          if (oh === 1 && ow === 1) emit(t, 'GlobalAveragePool', [input(a)]);
          else if (H % oh === 0 && W % ow === 0) emit(t, 'AveragePool', [input(a)], [ints('kernel_shape', [H / oh, W / ow]), ints('strides', [H / oh, W / ow])]);
          else throw new UnsupportedError(`exportOnnx: ${nameFor(t)}: adaptive average pooling ${H}x${W} -> ${oh}x${ow} has uneven bins, which ONNX pooling cannot express.`);
        } else if (op === 'reshape') {
          if (t.shape[0] !== a.shape[0]) throw new UnsupportedError(`exportOnnx: ${nameFor(t)}: a reshape [${a.shape}] -> [${t.shape}] that mixes the batch dimension.`);
          if (N === 2) emit(t, 'Flatten', [input(a)], [int('axis', 1)]);
          else {
            const shapeName = unique(`${nameFor(t)}.shape`);
            const target = BigInt64Array.from([0n, ...t.shape.slice(1).map(BigInt)]); // 0: copy the (symbolic) batch
            initializers.push({ name: shapeName, dims: [N], dataType: DataType.INT64, values: async () => target });
            emit(t, 'Reshape', [input(a), shapeName]);
          }
        } else {
          throw new UnsupportedError(`exportOnnx: ${nameFor(t)}: the op "${op}" has no ONNX export.`);
        }
      }
      outputDims.push(...y.shape.slice(1));
    });
  } finally {
    removeHook();
    model.train(wasTraining);
  }

  const initializer: TensorProto[] = [];
  for (const i of initializers) {
    const v = await i.values();
    initializer.push({ name: i.name, dims: i.dims, data_type: i.dataType ?? DataType.FLOAT, raw_data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
  }
  const valueInfo = (name: string, dims: (number | string)[]) => ({
    name,
    type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d })) } } },
  });
  return encodeModel({
    ir_version: opset >= 17 ? 8 : 7,
    opset_import: [{ domain: '', version: opset }],
    producer_name: 'intra-fusion-webgpu',
    producer_version: '0.1.0',
    metadata_props: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: o.graphName ?? 'model',
      node: nodes,
      initializer,
      input: [valueInfo('input', ['N', c, h, w])],
      output: [valueInfo('output', ['N', ...outputDims])],
    },
  });
}

/** The conv's weight and bias with an eval batch-norm folded in, eps included, computed once on demand. */
function foldedConv(conv: Conv2d, bn: BatchNorm2d, wName: string, bName: string): PendingInitializer[] {
  let pending: ReturnType<typeof foldedConvValues> | null = null;
  const folded = () => (pending ??= foldedConvValues(conv, bn, bn.eps));
  return [
    { name: wName, dims: [...conv.weight.shape], values: async () => (await folded()).weight },
    { name: bName, dims: [conv.outChannels], values: async () => (await folded()).bias },
  ];
}
