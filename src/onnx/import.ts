/**
 * ONNX import: an ONNX CNN becomes an `OnnxModel`, a Module whose children are the engine's own layers
 * (Conv2d, BatchNorm2d, Linear, pooling), so graph tracing, pruning, FLOP counting and export treat it
 * like a built-in model. Its forward runs the ONNX nodes in topological order: layers through
 * `module.call`, Relu / Add / Flatten / Reshape as autograd ops.
 *
 * Supported: Conv, BatchNormalization, Gemm (any transB, alpha/beta folded in), MatMul with an
 * initializer (and a following bias Add) as Linear, Relu, Add, Mul by a scalar, MaxPool, AveragePool, GlobalAveragePool,
 * Flatten (axis 1), Reshape to [batch, features], Identity, Dropout (inference: identity), Constant.
 * Anything else, or an attribute value the engine does not implement, is an UnsupportedError naming the
 * node; a malformed file (not protobuf, no graph, missing initializer, dynamic image size) a DataError.
 */
import { DataError, UnsupportedError } from '../errors.js';
import { checkFinite } from '../tensor/finite.js';
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import * as ag from '../tensor/autograd.js';
import { assign, type Tensor } from '../tensor/tensor.js';
import { AttributeType, DataType, decodeModel, type Attribute, type Model, type Node, type Tensor as TensorProto } from './proto.js';

/** The oldest default-domain opset accepted (opset 7 gave Gemm, BatchNormalization, Dropout their current meaning). */
export const MIN_OPSET = 7;

interface Step {
  node: string;
  inputs: string[];
  output: string;
  run: (inputs: Tensor[]) => Tensor;
}

/** An imported ONNX graph: engine layers as children, run in the file's topological order. */
export class OnnxModel extends Module {
  constructor(
    /** Input [channels, height, width] (the batch dimension is free). */
    readonly inputShape: [number, number, number],
    private readonly inputName: string,
    private readonly outputName: string,
    layers: [string, Module][],
    private readonly steps: Step[],
    /** The file's metadata_props (e.g. normalize_mean / normalize_std written by the exporter). */
    readonly metadata: Record<string, string> = {},
  ) {
    super();
    for (const [name, m] of layers) this.addChild(name, m);
  }

  forward(x: Tensor): Tensor {
    const values = new Map<string, Tensor>([[this.inputName, x]]);
    for (const s of this.steps) values.set(s.output, s.run(s.inputs.map((i) => values.get(i)!)));
    return values.get(this.outputName)!;
  }
}

type Attrs = Map<string, Attribute>;
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b ?? new Uint8Array());

/** The values of an initializer or Constant tensor (float types as float32, int64 as numbers). */
function tensorValues(t: TensorProto, where: string): { dims: number[]; values: Float32Array | number[] } {
  const dims = (t.dims ?? []).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  if (t.data_location === 1) throw new UnsupportedError(`${where}: tensor "${t.name}" keeps its data in an external file; save the model with its weights inside.`);
  const raw = t.raw_data?.length ? new Uint8Array(t.raw_data) : null; // a copy: the decoded view may be unaligned
  let values: Float32Array | number[];
  if (t.data_type === DataType.FLOAT) values = raw ? new Float32Array(raw.buffer, 0, raw.byteLength / 4) : Float32Array.from(t.float_data ?? []);
  else if (t.data_type === DataType.DOUBLE) values = Float32Array.from(raw ? new Float64Array(raw.buffer, 0, raw.byteLength / 8) : t.double_data ?? []);
  else if (t.data_type === DataType.INT64) values = raw ? Array.from(new BigInt64Array(raw.buffer, 0, raw.byteLength / 8), Number) : (t.int64_data ?? []).map(Number);
  else if (t.data_type === DataType.INT32) values = raw ? Array.from(new Int32Array(raw.buffer, 0, raw.byteLength / 4)) : t.int32_data ?? [];
  else throw new UnsupportedError(`${where}: tensor "${t.name}" has data type ${t.data_type}; float, double, int32 and int64 are supported.`);
  if (values.length !== count) throw new DataError(`${where}: tensor "${t.name}" has ${values.length} values for shape [${dims}] (${count}); the file is damaged.`);
  return { dims, values };
}

/** Reads an ONNX model and builds the engine model. `source` names the file in errors. */
export interface OnnxImportOptions {
  /** Load initializers holding NaN or infinity (default false: refused, naming the tensor). */
  allowNonFinite?: boolean;
}

export function importOnnx(bytes: Uint8Array, source = 'ONNX model', options: OnnxImportOptions = {}): OnnxModel {
  let model: Model;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new DataError(`${source} is not a valid ONNX file (truncated or not protobuf: ${(e as Error).message}).`);
  }
  const graph = model.graph;
  if (!graph?.node?.length) throw new DataError(`${source} is not an ONNX model: it has no graph nodes.`);
  const opset = model.opset_import?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version;
  if (opset === undefined) throw new DataError(`${source}: no opset_import for the default ONNX domain.`);
  if (opset < MIN_OPSET) throw new UnsupportedError(`${source}: opset ${opset} is too old; opsets ${MIN_OPSET} and newer are supported (re-export with a newer opset).`);

  // Constant data: initializers and Constant nodes.
  const constants = new Map<string, { dims: number[]; values: Float32Array | number[] }>();
  for (const t of graph.initializer ?? []) {
    const c = tensorValues(t, `${source}: initializer`);
    checkFinite(c.values, t.name ?? '', source, options.allowNonFinite);
    constants.set(t.name ?? '', c);
  }
  for (const n of graph.node) {
    if (n.op_type !== 'Constant') continue;
    const value = n.attribute?.find((a) => a.name === 'value')?.t;
    if (!value) throw new UnsupportedError(`${source}: node "${n.name}" (Constant): only the "value" tensor attribute is supported.`);
    constants.set(n.output![0], tensorValues(value, `${source}: node "${n.name}" (Constant)`));
  }

  const inputs = (graph.input ?? []).filter((v) => !constants.has(v.name));
  if (inputs.length !== 1) throw new UnsupportedError(`${source}: the graph has ${inputs.length} inputs (${inputs.map((v) => v.name).join(', ')}); one image input is supported.`);
  const input = inputs[0];
  const dims = input.type?.tensor_type?.shape?.dim ?? [];
  if (dims.length !== 4) throw new UnsupportedError(`${source}: input "${input.name}" has rank ${dims.length}; an NCHW image input [N, C, H, W] is supported.`);
  const inputShape = dims.slice(1).map((d, i) => {
    if (!(Number(d.dim_value) > 0)) throw new DataError(`${source}: input "${input.name}" has a dynamic ${['channel', 'height', 'width'][i]} dimension ("${d.dim_param ?? '?'}"); only the batch dimension may be dynamic. Re-export with a fixed input size.`);
    return Number(d.dim_value);
  }) as [number, number, number];
  if ((graph.output ?? []).length !== 1) throw new UnsupportedError(`${source}: the graph has ${(graph.output ?? []).length} outputs; one is supported.`);
  const outputName = graph.output![0].name ?? '';
  if (!graph.node.some((n) => n.op_type !== 'Constant' && (n.output ?? []).includes(outputName))) {
    throw new DataError(`${source}: the graph output "${outputName}" is not produced by any node (a damaged or hand-edited file?).`);
  }

  const readers = new Map<string, number>();
  for (const n of graph.node) for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 0) + 1);
  readers.set(graph.output![0].name, (readers.get(graph.output![0].name) ?? 0) + 1);

  const layers: [string, Module][] = [];
  const layerNames = new Set<string>();
  const steps: Step[] = [];
  const fusedAdds = new Set<Node>();
  const byOutput = new Map(graph.node.flatMap((n) => (n.output ?? []).map((o) => [o, n] as const)));

  for (const node of topologicalOrder(graph.node, new Set([input.name, ...constants.keys()]), source)) {
    if (node.op_type === 'Constant' || fusedAdds.has(node)) continue;
    const where = `${source}: node "${node.name ?? ''}" (${node.op_type})`;
    if (node.domain && node.domain !== 'ai.onnx') throw new UnsupportedError(`${where}: operator domain "${node.domain}" is not supported.`);
    const attrs: Attrs = new Map((node.attribute ?? []).map((a) => [a.name, a]));
    const ins = (node.input ?? []).filter((i) => i !== '');
    const out = node.output![0];
    // Second outputs (Dropout's mask, MaxPool's indices, training BN statistics) are not computed.
    const extra = (node.output ?? []).slice(1).find((o) => o !== '' && readers.has(o));
    if (extra !== undefined) throw new UnsupportedError(`${where}: its output "${extra}" is used; only the first output of a node is supported.`);
    const weight = (i: number, role: string) => {
      const c = constants.get(ins[i]);
      if (!c) throw new DataError(`${where}: ${role} "${ins[i] ?? ''}" is not an initializer (missing, or computed in the graph).`);
      return c;
    };
    /** Names a layer after its weight ("features.0.weight" -> "features.0") or the node, uniquely. */
    const addLayer = <M extends Module>(m: M): M => {
      const fromWeight = /^(.+)\.weight$/.exec(ins[1] ?? '')?.[1];
      const base = (fromWeight ?? node.name ?? '').replace(/[^A-Za-z0-9_.]+/g, '_').replace(/^[_.]+|[_.]+$/g, '') || `${node.op_type!.toLowerCase()}${layers.length}`;
      let name = base;
      for (let k = 1; layerNames.has(name); k++) name = `${base}_${k}`;
      layerNames.add(name);
      layers.push([name, m]);
      return m;
    };
    const step = (run: Step['run'], stepInputs = ins.slice(0, 1)) => steps.push({ node: node.name ?? '', inputs: stepInputs, output: out, run });
    const layerStep = (m: Module) => step(([x]) => m.call(x));

    switch (node.op_type) {
      case 'Conv': {
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'dilations', 'group', 'auto_pad'], where);
        const w = weight(1, 'weight');
        if (w.dims.length !== 4 || w.dims[2] !== w.dims[3]) throw new UnsupportedError(`${where}: weight shape [${w.dims}]; square 2-D kernels are supported.`);
        const group = intAttr(attrs, 'group', 1);
        const stride = square(attrs, 'strides', 1, where);
        const padding = symmetricPads(attrs, where);
        noDilation(attrs, where);
        notAutoPad(attrs, where);
        const [outC, inPerGroup, k] = w.dims;
        const kernelShape = intsAttr(attrs, 'kernel_shape');
        if (kernelShape && kernelShape.join() !== `${k},${k}`) throw new DataError(`${where}: kernel_shape=[${kernelShape}] does not match the weight's [${w.dims}].`);
        const bias = ins[2] !== undefined ? weight(2, 'bias') : null;
        const conv = addLayer(new Conv2d(inPerGroup * group, outC, k, stride, padding, !!bias, group));
        assign(conv.weight, w.values);
        if (bias && conv.bias) assign(conv.bias, bias.values);
        layerStep(conv);
        break;
      }
      case 'BatchNormalization': {
        allowOnly(attrs, ['epsilon', 'momentum', 'spatial', 'training_mode', 'is_test'], where);
        if (intAttr(attrs, 'training_mode', 0) !== 0) throw new UnsupportedError(`${where}: training_mode=1 is not supported (inference graphs only).`);
        if (intAttr(attrs, 'spatial', 1) !== 1) throw new UnsupportedError(`${where}: spatial=0 is not supported.`);
        const [scale, b, mean, variance] = [1, 2, 3, 4].map((i, j) => weight(i, ['scale', 'B', 'mean', 'var'][j]));
        const bn = addLayer(new BatchNorm2d(scale.values.length, attrs.get('epsilon')?.f ?? 1e-5));
        assign(bn.weight, scale.values);
        assign(bn.bias, b.values);
        assign(bn.running_mean, mean.values);
        assign(bn.running_var, variance.values);
        layerStep(bn);
        break;
      }
      case 'Gemm': {
        allowOnly(attrs, ['alpha', 'beta', 'transA', 'transB'], where);
        if (intAttr(attrs, 'transA', 0) !== 0) throw new UnsupportedError(`${where}: transA=1 is not supported.`);
        const w = weight(1, 'B (weight)');
        const c = ins[2] !== undefined ? weight(2, 'C (bias)') : null;
        layerStep(linearLayer(w, c, intAttr(attrs, 'transB', 0) === 1, attrs.get('alpha')?.f ?? 1, attrs.get('beta')?.f ?? 1, where, addLayer));
        break;
      }
      case 'MatMul': {
        const w = weight(1, 'B (weight)');
        // MatMul followed by an Add of a bias vector is one Linear (what many exporters write for Gemm).
        const add = readers.get(out) === 1 ? graph.node.find((n) => n.op_type === 'Add' && n.input?.includes(out)) : undefined;
        const biasName = add?.input?.find((i) => i !== out);
        const bias = biasName !== undefined && constants.has(biasName) ? constants.get(biasName)! : null;
        const linear = linearLayer(w, bias, false, 1, 1, where, addLayer);
        if (bias && add) {
          fusedAdds.add(add);
          steps.push({ node: node.name ?? '', inputs: ins.slice(0, 1), output: add.output![0], run: ([x]) => linear.call(x) });
        } else layerStep(linear);
        break;
      }
      case 'Relu':
        allowOnly(attrs, [], where);
        step(([x]) => ag.relu(x));
        break;
      case 'Add':
        allowOnly(attrs, [], where);
        if (ins.some((i) => constants.has(i))) throw new UnsupportedError(`${where}: adding a constant tensor is supported only as the bias after a MatMul.`);
        step(([a, b]) => ag.add(a, b), ins);
        break;
      case 'Mul': {
        allowOnly(attrs, [], where);
        const factor = ins.map((i) => constants.get(i)).find((c) => c?.values.length === 1);
        const x = ins.find((i) => !constants.has(i));
        if (!factor || x === undefined) throw new UnsupportedError(`${where}: only multiplying by a constant scalar is supported.`);
        step(([t]) => ag.scale(t, factor.values[0]), [x]);
        break;
      }
      case 'MaxPool': {
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'dilations', 'ceil_mode', 'auto_pad', 'storage_order'], where);
        const pool = poolAttrs(attrs, where);
        layerStep(addLayer(new MaxPool2d(pool.kernel, pool.stride, pool.padding)));
        break;
      }
      case 'AveragePool': {
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'ceil_mode', 'auto_pad', 'count_include_pad'], where);
        const pool = poolAttrs(attrs, where);
        if (pool.padding) throw new UnsupportedError(`${where}: padded average pooling (pads ${pool.padding}) is not supported.`);
        layerStep(addLayer(new AvgPool2d(pool.kernel, pool.stride)));
        break;
      }
      case 'GlobalAveragePool':
        allowOnly(attrs, [], where);
        layerStep(addLayer(new AdaptiveAvgPool2d(1)));
        break;
      case 'Flatten':
        allowOnly(attrs, ['axis'], where);
        if (intAttr(attrs, 'axis', 1) !== 1) throw new UnsupportedError(`${where}: axis=${intAttr(attrs, 'axis', 1)}; only axis=1 (keep the batch) is supported.`);
        step(([x]) => ag.flatten(x));
        break;
      case 'Reshape': {
        allowOnly(attrs, ['allowzero'], where);
        const target = weight(1, 'shape');
        const [first, second] = Array.from(target.values);
        if (target.values.length !== 2 || !(first === 0 || first === -1) || intAttr(attrs, 'allowzero', 0) !== 0) {
          throw new UnsupportedError(`${where}: reshape to [${Array.from(target.values)}]; only a flatten to [batch, features] is supported.`);
        }
        step(([x]) => {
          const features = x.size / x.shape[0];
          if (second !== -1 && second !== features) throw new UnsupportedError(`${where}: reshape of [${x.shape}] to [${first}, ${second}] is not a flatten to [batch, ${features}].`);
          return ag.flatten(x);
        });
        break;
      }
      case 'Identity':
      case 'Dropout':
        allowOnly(attrs, node.op_type === 'Dropout' ? ['ratio', 'seed', 'is_test'] : [], where);
        step(([x]) => x);
        break;
      default:
        throw new UnsupportedError(`${where}: the operator ${node.op_type} is not supported.`);
    }
  }
  const metadata = Object.fromEntries((model.metadata_props ?? []).map((p) => [p.key, p.value]));
  return new OnnxModel(inputShape, input.name, graph.output![0].name, layers, steps, metadata);
}

/** Kahn's order over values: a node runs once all its inputs exist. Unreachable inputs are a DataError. */
function topologicalOrder(nodes: Node[], available: Set<string>, source: string): Node[] {
  const order: Node[] = [];
  const pending = [...nodes];
  while (pending.length) {
    const i = pending.findIndex((n) => n.op_type === 'Constant' || (n.input ?? []).every((v) => v === '' || available.has(v)));
    if (i < 0) {
      const stuck = pending[0];
      const missing = (stuck.input ?? []).find((v) => v !== '' && !available.has(v));
      const produced = pending.some((n) => n.output?.includes(missing!));
      throw new DataError(`${source}: node "${stuck.name ?? ''}" (${stuck.op_type}) reads "${missing}", which ${produced ? 'is part of a cycle' : 'is neither an initializer, the input nor any node\'s output (a missing initializer?)'}.`);
    }
    const [n] = pending.splice(i, 1);
    for (const o of n.output ?? []) available.add(o);
    order.push(n);
  }
  return order;
}

function allowOnly(attrs: Attrs, allowed: string[], where: string): void {
  for (const name of attrs.keys()) if (!allowed.includes(name)) throw new UnsupportedError(`${where}: attribute "${name}" is not supported.`);
}

function intAttr(attrs: Attrs, name: string, fallback: number): number {
  const a = attrs.get(name);
  return a === undefined ? fallback : Number(a.i ?? 0);
}

function intsAttr(attrs: Attrs, name: string): number[] | undefined {
  const a = attrs.get(name);
  return a && (a.type === AttributeType.INTS || a.ints?.length) ? (a.ints ?? []).map(Number) : undefined;
}

/** A 2-D attribute (strides, kernel_shape) that must be equal in both directions. */
function square(attrs: Attrs, name: string, fallback: number | undefined, where: string): number {
  const v = intsAttr(attrs, name) ?? (fallback === undefined ? undefined : [fallback, fallback]);
  if (!v) throw new DataError(`${where}: attribute "${name}" is required.`);
  if (v.length !== 2 || v[0] !== v[1]) throw new UnsupportedError(`${where}: ${name}=[${v}]; equal values for height and width are supported.`);
  return v[0];
}

function symmetricPads(attrs: Attrs, where: string): number {
  const pads = intsAttr(attrs, 'pads') ?? [0, 0, 0, 0];
  if (pads.length !== 4 || pads.some((p) => p !== pads[0])) throw new UnsupportedError(`${where}: pads=[${pads}]; equal padding on all four sides is supported.`);
  return pads[0];
}

function noDilation(attrs: Attrs, where: string): void {
  const d = intsAttr(attrs, 'dilations');
  if (d && d.some((v) => v !== 1)) throw new UnsupportedError(`${where}: dilations=[${d}]; only dilation 1 is supported.`);
}

function notAutoPad(attrs: Attrs, where: string): void {
  const a = attrs.get('auto_pad');
  const mode = a ? text(a.s) : 'NOTSET';
  if (mode !== 'NOTSET') throw new UnsupportedError(`${where}: auto_pad=${mode}; only NOTSET (explicit pads) is supported.`);
}

function poolAttrs(attrs: Attrs, where: string): { kernel: number; stride: number; padding: number } {
  const kernel = square(attrs, 'kernel_shape', undefined, where);
  if (intAttr(attrs, 'ceil_mode', 0) !== 0) throw new UnsupportedError(`${where}: ceil_mode=1 is not supported.`);
  noDilation(attrs, where);
  notAutoPad(attrs, where);
  if (intAttr(attrs, 'storage_order', 0) !== 0) throw new UnsupportedError(`${where}: storage_order=1 is not supported.`);
  return { kernel, stride: square(attrs, 'strides', 1, where), padding: symmetricPads(attrs, where) };
}

/** y = alpha * x W' + beta * c as a Linear (weight [out, in]); `w` is [out, in] when transB, else [in, out]. */
function linearLayer(
  w: { dims: number[]; values: Float32Array | number[] }, c: { dims: number[]; values: Float32Array | number[] } | null,
  transB: boolean, alpha: number, beta: number, where: string, addLayer: (m: Linear) => Linear,
): Linear {
  if (w.dims.length !== 2) throw new UnsupportedError(`${where}: weight shape [${w.dims}]; a 2-D weight is supported.`);
  const [outF, inF] = transB ? w.dims : [w.dims[1], w.dims[0]];
  if (c && c.values.length !== outF) throw new UnsupportedError(`${where}: bias shape [${c.dims}]; a bias of ${outF} values (one per output) is supported.`);
  const weight = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) weight[o * inF + i] = alpha * w.values[transB ? o * inF + i : i * outF + o];
  const linear = addLayer(new Linear(inF, outF, !!c));
  assign(linear.weight, weight);
  if (c && linear.bias) assign(linear.bias, Float32Array.from(c.values, (v) => beta * v));
  return linear;
}
