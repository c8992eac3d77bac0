/**
 * ONNX export of any model the engine runs, by tracing its eval-mode autograd graph on an example input
 * (so user-built models export as well as VGG and ResNet). Each recorded op is written by its spec's
 * export (src/graph/ops.ts); a conv2d whose batch-norm is paired with it (src/graph/pairing.ts: the BN is
 * the conv output's only reader) becomes one Conv computing the BN's output, with eval-mode arithmetic
 * W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta, so the ONNX model
 * computes what the engine computes.
 *
 * The batch dimension is symbolic ("N"); weights are initializers named as in the model's state_dict.
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { opSpec, type OnnxExportContext } from '../graph/ops.js';
import { pairConvBn } from '../graph/pairing.js';
import { traceGraph, weightOwners } from '../graph/trace.js';
import { isRecording } from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { DataType, encodeModel, type Node, type Tensor as TensorProto } from './proto.js';

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

  const outputDims: number[] = [];
  // Batch 2, not 1: a reshape that folds the batch into the features then shows in the shapes.
  traceGraph(model, [c, h, w], ({ input: x, output: y, ops, modulePath }) => {
    if (!y.node) throw new UnsupportedError('exportOnnx: the model output does not depend on any parameter.');
    const valueName = new Map<Tensor, string>([[x, 'input'], [y, 'output']]);
    const foldedInto = new Map<Tensor, Tensor>(pairConvBn(ops, y, owner).map((p) => [p.convOp, p.bnOp]));
    const folded = new Set(foldedInto.values());
    const nodeName = new Map<Tensor, string>();
    let counter = 0;
    const ctx: OnnxExportContext = {
      opset,
      owner: (weight) => owner.get(weight),
      input(t) {
        const name = valueName.get(t);
        if (name === undefined) throw new UnsupportedError(`exportOnnx: an op reads a tensor of shape [${t.shape}] created inside forward (not the input, a parameter or another op's output).`);
        return name;
      },
      param(t, role = 'weight') {
        const name = paramName(t, role);
        if (!initializers.some((i) => i.name === name)) initializers.push({ name, dims: [...t.shape], values: () => t.data() });
        return name;
      },
      paramName,
      initializer(name, dims, values, dataType) {
        if (!initializers.some((i) => i.name === name)) initializers.push({ name, dims, values, dataType });
        return name;
      },
      unique,
      nameOf(t) {
        let name = nodeName.get(t);
        if (name === undefined) {
          const path = modulePath(t);
          nodeName.set(t, (name = path && path !== '(model)' ? path : `${t.node!.op}_${counter++}`));
        }
        return name;
      },
      foldedBatchNorm: (convOp) => foldedInto.get(convOp),
      emit(t, opType, inputs, attribute = []) {
        // A folded BN's node is named after the conv computing it.
        const name = unique(foldedInto.get(t.node?.inputs[0] ?? t) === t ? ctx.nameOf(t.node!.inputs[0]) : ctx.nameOf(t));
        if (!valueName.has(t)) valueName.set(t, unique(`${name}_out`));
        nodes.push({ name, op_type: opType, input: inputs, output: [valueName.get(t)!], attribute });
      },
      intermediate(t, opType, inputs, attribute = []) {
        const name = unique(`${ctx.nameOf(t)}.${opType}`);
        const output = unique(`${name}_out`);
        nodes.push({ name, op_type: opType, input: inputs, output: [output], attribute });
        return output;
      },
    };
    for (const t of ops) {
      if (folded.has(t)) continue;
      const spec = opSpec(t.node!.op);
      if (!spec?.onnx?.export) throw new UnsupportedError(`exportOnnx: ${ctx.nameOf(t)}: the op "${t.node!.op}" has no ONNX export.`);
      spec.onnx.export(t, ctx);
    }
    outputDims.push(...y.shape.slice(1));
  }, 2);

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
