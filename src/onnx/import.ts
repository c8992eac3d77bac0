/**
 * ONNX import: an ONNX CNN becomes an `OnnxModel`, a Module whose children are the engine's own layers
 * (Conv2d, BatchNorm2d, Linear, pooling), so graph tracing, pruning, FLOP counting and export treat it
 * like a built-in model. Its forward runs the ONNX nodes in topological order: layers through
 * `module.call`, the other ops as autograd ops.
 *
 * This file is the driver: it decodes the file, checks the graph's input and output, runs the pre-pass
 * (constants, Identity copies of initializers, folded shape arithmetic: prepass.ts), then hands every node
 * to the importer its ONNX op type has in the op table (src/graph/specs/*, `importers`), or to one of the
 * pass-through importers below (Identity, Dropout, an all-zero Pad) that make no engine op. Anything else,
 * or an attribute value the engine does not implement, is an UnsupportedError naming the node; a
 * malformed file (not protobuf, no graph, missing initializer, dynamic image size) a DataError.
 */
import { DataError, UnsupportedError } from '../errors.js';
import { checkFinite } from '../tensor/finite.js';
import { Module } from '../nn/module.js';
import { onnxImporter, onnxImportTypes, type OnnxImportContext, type OnnxImporter } from '../graph/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { prepass } from './prepass.js';
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
  const readersOf = new Map<string, Node[]>();
  for (const n of graph.node) for (const i of n.input ?? []) readersOf.set(i, [...(readersOf.get(i) ?? []), n]);
  for (const node of order) {
    if (folded.has(node) || fusedAdds.has(node)) continue;
    const where = `${source}: node "${node.name ?? ''}" (${node.op_type})`;
    if (node.domain && node.domain !== 'ai.onnx') throw new UnsupportedError(`${where}: operator domain "${node.domain}" is not supported.`);
    const attrs: Attrs = new Map((node.attribute ?? []).map((a) => [a.name, a]));
    const ins = (node.input ?? []).filter((i) => i !== '');
    const out = node.output![0];
    const importer = PASS_THROUGH[node.op_type ?? ''] ?? onnxImporter(node.op_type ?? '');
    if (!importer) throw new UnsupportedError(`${where}: the operator ${node.op_type} is not supported.`);
    const ctx: OnnxImportContext = {
      where, opset, node, inputs: ins, staticBatch,
      allowOnly(allowed) {
        for (const name of attrs.keys()) if (!allowed.includes(name)) throw new UnsupportedError(`${where}: attribute "${name}" is not supported.`);
      },
      int: (name, fallback) => (attrs.has(name) ? Number(attrs.get(name)!.i ?? 0) : fallback),
      float: (name, fallback) => attrs.get(name)?.f ?? fallback,
      ints(name) {
        const a = attrs.get(name);
        return a && (a.type === AttributeType.INTS || a.ints?.length) ? (a.ints ?? []).map(Number) : undefined;
      },
      text: (name, fallback) => (attrs.has(name) ? new TextDecoder().decode(attrs.get(name)!.s ?? new Uint8Array()) : fallback),
      constant: (name) => constants.get(name),
      shape: (name) => shapes.get(name),
      weight(i, role) {
        const c = constants.get(ins[i]);
        if (!c) throw new DataError(`${where}: ${role} "${ins[i] ?? ''}" is not an initializer (missing, or computed in the graph).`);
        return c;
      },
      readers: (value) => readers.get(value) ?? 0,
      producer: (value) => byOutput.get(value),
      readersOf: (value) => readersOf.get(value) ?? [],
      /**
       * Names a layer after its weight ("features.0.weight" -> "features.0"), else after the module path in
       * the node's scoped name (PyTorch names a conv with BN folded in "/layer1/layer1.0/conv1/Conv" and its
       * weight "onnx::Conv_193"), else the node, uniquely.
       */
      addLayer(m) {
        const fromWeight = /^(.+)\.weight$/.exec(ins[1] ?? '')?.[1];
        const base = (fromWeight ?? scopePath(node.name ?? '') ?? node.name ?? '').replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[_.]+|[_.]+$/g, '') || `${node.op_type!.toLowerCase()}${layers.length}`;
        let name = base;
        for (let k = 1; layerNames.has(name); k++) name = `${base}_${k}`;
        layerNames.add(name);
        layers.push([name, m]);
        return m;
      },
      step: (run, stepInputs = ins.slice(0, 1), output = out) => void steps.push({ node: node.name ?? '', inputs: stepInputs, output, run }),
      layerStep: (m) => ctx.step(([x]) => m.call(x)),
      dropStep(output) {
        const i = steps.findIndex((st) => st.output === output);
        if (i >= 0) steps.splice(i, 1);
        return i >= 0;
      },
      skip: (n) => void fusedAdds.add(n),
    };
    importer(ctx);
    // Second outputs are computed only by importers that make a step for them (Split); others (Dropout's
    // mask, MaxPool's indices, training BN statistics) are not.
    const extra = (node.output ?? []).slice(1).find((o) => o !== '' && readers.has(o) && !steps.some((st) => st.output === o));
    if (extra !== undefined) throw new UnsupportedError(`${where}: its output "${extra}" is used; only the first output of a node is supported.`);
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

/** ONNX ops that make no engine op: their output is their input. */
const PASS_THROUGH: Record<string, OnnxImporter> = {
  Identity(ctx) {
    ctx.allowOnly([]);
    ctx.step(([x]) => x);
  },
  Dropout(ctx) {
    // Inference: the identity.
    ctx.allowOnly(['ratio', 'seed', 'is_test']);
    ctx.step(([x]) => x);
  },
  Pad(ctx) {
    // PyTorch writes a Pad of zeros before AvgPool2d (count_include_pad): nothing to do then.
    ctx.allowOnly(['mode', 'pads', 'value']);
    const mode = ctx.text('mode', 'constant');
    const pads = ctx.opset < 11 ? ctx.ints('pads') ?? [] : ctx.node.input?.[1] ? Array.from(ctx.weight(1, 'pads').values) : [];
    if (pads.some((p) => p !== 0)) throw new UnsupportedError(`${ctx.where}: ${mode} padding [${pads}] is not supported (only an all-zero Pad).`);
    ctx.step(([x]) => x);
  },
};

/** ONNX op types import reads: the op specs' importers and the pass-through ones. */
export function importedOnnxOps(): string[] {
  return [...new Set([...Object.keys(PASS_THROUGH), ...onnxImportTypes()])];
}
