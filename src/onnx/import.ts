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
import { prepass, resolveDims, type ConstTensor, type Dim } from './prepass.js';
import { AttributeType, decodeModel, type Attribute, type Model, type Node } from './proto.js';

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
  /** @internal Built by importOnnx. */
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

/** Options of importOnnx. */
export interface OnnxImportOptions {
  /** Load initializers holding NaN or infinity (default false: refused, naming the tensor). */
  allowNonFinite?: boolean;
}

/** Reads an ONNX model and builds the engine model. `source` names the file in errors. */
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

  const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const inputs = (graph.input ?? []).filter((v) => !initializerNames.has(v.name));
  if (inputs.length !== 1) throw new UnsupportedError(`${source}: the graph has ${inputs.length} inputs (${inputs.map((v) => v.name).join(', ')}); one image input is supported.`);
  const input = inputs[0];
  const dims = input.type?.tensor_type?.shape?.dim ?? [];
  if (dims.length !== 4) throw new UnsupportedError(`${source}: input "${input.name}" has rank ${dims.length}; an NCHW image input [N, C, H, W] is supported.`);
  const staticBatch = Number(dims[0].dim_value) > 0 ? Number(dims[0].dim_value) : undefined;
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

  const order = topologicalOrder(graph.node, new Set([input.name, ...initializerNames]), source);
  const { constants, shapes, folded } = prepass(graph.initializer ?? [], order, opset, source);
  for (const name of initializerNames) {
    const c = constants.get(name);
    if (c) checkFinite(c.values, name, source, options.allowNonFinite);
  }
  for (const node of order) {
    if (folded.has(node) || fusedAdds.has(node)) continue;
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
    /**
     * Names a layer after its weight ("features.0.weight" -> "features.0"), else after the module path in
     * the node's scoped name (PyTorch names a conv with BN folded in "/layer1/layer1.0/conv1/Conv" and its
     * weight "onnx::Conv_193"), else the node, uniquely.
     */
    const addLayer = <M extends Module>(m: M): M => {
      const fromWeight = /^(.+)\.weight$/.exec(ins[1] ?? '')?.[1];
      const base = (fromWeight ?? scopePath(node.name ?? '') ?? node.name ?? '').replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[_.]+|[_.]+$/g, '') || `${node.op_type!.toLowerCase()}${layers.length}`;
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
        // Any 2-D geometry PyTorch writes: kernels 1x7 / 7x1, strides, ONNX's [top, left, bottom, right] pads,
        // dilations, groups (depthwise, ResNeXt, RegNet).
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'dilations', 'group', 'auto_pad'], where);
        const w = weight(1, 'weight');
        if (w.dims.length !== 4) throw new UnsupportedError(`${where}: weight shape [${w.dims}]; 2-D convolutions are supported.`);
        notAutoPad(attrs, where);
        const group = intAttr(attrs, 'group', 1);
        const [outC, inPerGroup, kh, kw] = w.dims;
        const kernelShape = intsAttr(attrs, 'kernel_shape');
        if (kernelShape && kernelShape.join() !== `${kh},${kw}`) throw new DataError(`${where}: kernel_shape=[${kernelShape}] does not match the weight's [${w.dims}].`);
        const pair = (name: string) => {
          const v = intsAttr(attrs, name) ?? [1, 1];
          if (v.length !== 2) throw new UnsupportedError(`${where}: ${name}=[${v}]; two values (height, width) are expected.`);
          return v as [number, number];
        };
        const pads = intsAttr(attrs, 'pads') ?? [0, 0, 0, 0];
        if (pads.length !== 4) throw new UnsupportedError(`${where}: pads=[${pads}]; four values are expected.`);
        const bias = ins[2] !== undefined ? weight(2, 'bias') : null;
        const conv = addLayer(new Conv2d(inPerGroup * group, outC, [kh, kw], pair('strides'), pads as [number, number, number, number], !!bias, group, pair('dilations')));
        assign(conv.weight, w.values);
        if (bias && conv.bias) assign(conv.bias, bias.values);
        layerStep(conv);
        break;
      }
      case 'BatchNormalization': {
        allowOnly(attrs, ['epsilon', 'momentum', 'spatial', 'training_mode', 'is_test'], where);
        // Training mode: opset 14+ says training_mode=1; opsets up to 13 ask for the running statistics as
        // extra outputs (PyTorch writes all five). Either way the graph normalises with batch statistics.
        const statsOutputs = (node.output ?? []).slice(1).filter((o) => o !== '');
        if (intAttr(attrs, 'training_mode', 0) !== 0 || statsOutputs.length) {
          throw new UnsupportedError(`${where}: a training-mode batch norm (${intAttr(attrs, 'training_mode', 0) !== 0 ? 'training_mode=1' : `statistics outputs ${statsOutputs.map((o) => `"${o}"`).join(', ')}`}) is not supported; export the model in eval mode (model.eval(), training=TrainingMode.EVAL).`);
        }
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
        const [a, b] = ins;
        const factor = [a, b].map((i) => constants.get(i)).find((c) => c !== undefined);
        if (factor) {
          const x = constants.has(a) ? b : a;
          if (factor.values.length !== 1 || constants.has(x)) throw new UnsupportedError(`${where}: multiplying by a constant tensor of shape [${factor.dims}]; a scalar or another activation is supported.`);
          step(([t]) => ag.scale(t, factor.values[0]), [x]);
          break;
        }
        // x * sigmoid(x) is SiLU and x * hardsigmoid(x) is HardSwish as PyTorch writes them (SiLU at every
        // opset, HardSwish before opset 14): one op each, when the gate has no other reader.
        const gate = [b, a].map((g) => byOutput.get(g)).find((g) => g && readers.get(g.output![0]) === 1 && g.input?.[0] === (g.output![0] === b ? a : b));
        const isPyTorchHardSigmoid = (g: Node) => Math.abs(floatAttr(g, 'alpha', 0.2) - 1 / 6) < 1e-7 && floatAttr(g, 'beta', 0.5) === 0.5;
        if (gate?.op_type === 'Sigmoid' || (gate?.op_type === 'HardSigmoid' && isPyTorchHardSigmoid(gate))) {
          const x = gate.input![0];
          const steps0 = steps.findIndex((st) => st.output === gate.output![0]);
          if (steps0 >= 0) steps.splice(steps0, 1);
          step(([t]) => (gate.op_type === 'Sigmoid' ? ag.silu(t) : ag.hardSwish(t)), [x]);
          break;
        }
        // Two activations: a squeeze-excitation gate [N, C, 1, 1] over [N, C, H, W], or the same shapes.
        step(([p, q]) => ag.mul(p, q), [a, b]);
        break;
      }
      case 'Clip': {
        // ReLU6 and hardtanh: bounds as attributes before opset 11, as optional constant inputs after.
        allowOnly(attrs, opset < 11 ? ['min', 'max'] : [], where);
        const bound = (i: number, attr: string, fallback: number) => {
          if (opset < 11) return attrs.get(attr)?.f ?? fallback;
          const name = node.input?.[i];
          if (!name) return fallback;
          const c = constants.get(name);
          if (!c || c.values.length !== 1) throw new UnsupportedError(`${where}: its ${attr} "${name}" must be a constant scalar.`);
          return c.values[0];
        };
        const [lo, hi] = [bound(1, 'min', -Infinity), bound(2, 'max', Infinity)];
        step(([x]) => ag.clip(x, lo, hi));
        break;
      }
      case 'HardSigmoid': {
        allowOnly(attrs, ['alpha', 'beta'], where);
        const [alpha, beta] = [floatAttr(node, 'alpha', 0.2), floatAttr(node, 'beta', 0.5)];
        step(([x]) => ag.hardSigmoid(x, alpha, beta));
        break;
      }
      case 'HardSwish':
        allowOnly(attrs, [], where);
        step(([x]) => ag.hardSwish(x));
        break;
      case 'Sigmoid':
        allowOnly(attrs, [], where);
        step(([x]) => ag.sigmoid(x));
        break;
      case 'Concat': {
        // Activations along channels (DenseNet, SqueezeNet's Fire, Inception); a Concat of shapes was folded.
        allowOnly(attrs, ['axis'], where);
        const constant = ins.find((i) => constants.has(i) || shapes.has(i));
        if (constant !== undefined) throw new UnsupportedError(`${where}: concatenating the constant "${constant}" with activations is not supported.`);
        const axis = intAttr(attrs, 'axis', 1);
        step((xs) => (xs.length === 1 ? xs[0] : ag.concat(xs, axis)), ins);
        break;
      }
      case 'Pad': {
        // PyTorch writes a Pad of zeros before AvgPool2d (count_include_pad): nothing to do then.
        allowOnly(attrs, ['mode', 'pads', 'value'], where);
        const mode = attrs.has('mode') ? text(attrs.get('mode')!.s) : 'constant';
        const pads = opset < 11 ? intsAttr(attrs, 'pads') ?? [] : node.input?.[1] ? Array.from(weight(1, 'pads').values) : [];
        if (pads.some((p) => p !== 0)) throw new UnsupportedError(`${where}: ${mode} padding [${pads}] is not supported (only an all-zero Pad).`);
        step(([x]) => x);
        break;
      }
      case 'MaxPool': {
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'dilations', 'ceil_mode', 'auto_pad', 'storage_order'], where);
        const pool = poolAttrs(attrs, where);
        layerStep(addLayer(new MaxPool2d(pool.kernel, pool.stride, pool.padding, pool.ceilMode)));
        break;
      }
      case 'AveragePool': {
        allowOnly(attrs, ['kernel_shape', 'strides', 'pads', 'ceil_mode', 'auto_pad', 'count_include_pad'], where);
        const pool = poolAttrs(attrs, where);
        // ONNX's count_include_pad defaults to 0, PyTorch's to True (which it writes as a Pad node instead).
        layerStep(addLayer(new AvgPool2d(pool.kernel, pool.stride, pool.padding, pool.ceilMode, intAttr(attrs, 'count_include_pad', 0) === 1)));
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
        // A flatten [N, C, H, W] -> [N, C*H*W] written any way exporters write it: [0, -1], [-1, features],
        // the static batch [2, -1], or x.view(x.size(0), -1) (its shape chain folded by the pre-pass).
        allowOnly(attrs, ['allowzero'], where);
        if (intAttr(attrs, 'allowzero', 0) !== 0) throw new UnsupportedError(`${where}: allowzero=1 is not supported.`);
        const target: Dim[] | undefined = shapes.get(ins[1])?.dims ?? (constants.has(ins[1]) ? Array.from(constants.get(ins[1])!.values) : undefined);
        if (!target) throw new UnsupportedError(`${where}: the target shape "${ins[1]}" is computed from values other than shapes; only a constant or shape-derived target is supported.`);
        const isBatch = (d: Dim) => d === 0 || d === staticBatch || (typeof d === 'object' && d.axis === 0);
        const describe = target.map((d) => (typeof d === 'number' ? d : `${d.of}.shape[${d.axis}]`)).join(', ');
        if (target.length !== 2 || !(isBatch(target[0]) || (target[0] === -1 && typeof target[1] === 'number' && target[1] > 0))) {
          throw new UnsupportedError(`${where}: reshape to [${describe}]; only a flatten to [batch, features] is supported.`);
        }
        const symbolic = [...new Set(target.flatMap((d) => (typeof d === 'object' ? [d.of] : [])))];
        step((values) => {
          const x = values[0];
          const valueShape = (name: string) => values[1 + symbolic.indexOf(name)].shape;
          const [first, second] = resolveDims(target, valueShape);
          const features = x.size / x.shape[0];
          // The static batch of a fixed-batch export means "the batch" (tracing runs one sample).
          const batchOk = first === 0 || first === x.shape[0] || (staticBatch !== undefined && first === staticBatch) || (first === -1 && second === features);
          if (!batchOk || !(second === -1 || second === features)) throw new UnsupportedError(`${where}: reshape of [${x.shape}] to [${first}, ${second}] is not a flatten to [${x.shape[0]}, ${features}].`);
          return ag.flatten(x);
        }, [ins[0], ...symbolic]);
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

/**
 * The module path in a PyTorch scoped node name: "/features/features.1/conv/conv.0/conv.0.0/Conv" ->
 * "features.1.conv.0.0" (each scope repeats its parent's name when it is a numbered child). Undefined for
 * names without scopes.
 */
export function scopePath(nodeName: string): string | undefined {
  const scopes = nodeName.split('/');
  if (scopes.length < 3 || scopes[0] !== '') return undefined;
  let path = '';
  let previous = '';
  for (const scope of scopes.slice(1, -1)) {
    path = previous && scope.startsWith(`${previous}.`) ? path.slice(0, path.length - previous.length) + scope : path ? `${path}.${scope}` : scope;
    previous = scope;
  }
  return path || undefined;
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

function floatAttr(node: Node, name: string, fallback: number): number {
  return node.attribute?.find((a) => a.name === name)?.f ?? fallback;
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

function poolAttrs(attrs: Attrs, where: string): { kernel: number; stride: number; padding: number; ceilMode: boolean } {
  const kernel = square(attrs, 'kernel_shape', undefined, where);
  noDilation(attrs, where);
  notAutoPad(attrs, where);
  if (intAttr(attrs, 'storage_order', 0) !== 0) throw new UnsupportedError(`${where}: storage_order=1 is not supported.`);
  return { kernel, stride: square(attrs, 'strides', 1, where), padding: symmetricPads(attrs, where), ceilMode: intAttr(attrs, 'ceil_mode', 0) === 1 };
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
