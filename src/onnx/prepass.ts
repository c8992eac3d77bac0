/**
 * What ONNX import settles before any op is imported, over the whole graph:
 *
 *   - Constant data: initializers, Constant nodes, and Identity nodes whose input is constant. PyTorch's
 *     exporter writes bit-identical initializers once and every other copy as an Identity node
 *     (`Identity layer4.0.bn1.weight -> layer4.1.bn2.running_var`), so a weight may be an Identity output.
 *   - Shape arithmetic: Shape / Gather / Unsqueeze / Squeeze / Concat / Slice / Cast chains on shapes are
 *     folded to constant integer vectors at import. A dimension read from an activation stays symbolic
 *     (`{ of: value, axis }`) and resolves to that activation's actual size when the model runs; all
 *     others are numbers. So `x.view(x.size(0), -1)` (Shape, Gather, Unsqueeze, Concat, Reshape) imports
 *     as a flatten with a dynamic batch as with a static one. Integer Add / Sub / Mul / Div on such values
 *     fold too, symbolic ones into expressions (`{ op, a, b }`): `x.chunk(2, 1)` exports its bounds as
 *     (C + 1) / 2 * 1 and * 2 of the channel count C.
 *
 * Nodes fully evaluated here are skipped by the op importers.
 */
import { DataError, UnsupportedError } from '../errors.js';
import { DataType, type Node, type Tensor as TensorProto } from './proto.js';

export interface ConstTensor {
  dims: number[];
  values: Float32Array | number[];
}

/**
 * One dimension of a folded shape vector: a number, axis `axis` of activation `of` at run time, or integer
 * arithmetic on two of them (ONNX's Add, Sub, Mul, Div; Div truncates, as ONNX's integer Div).
 */
export type Dim = number | { of: string; axis: number } | { op: ArithOp; a: Dim; b: Dim };
export type ArithOp = 'Add' | 'Sub' | 'Mul' | 'Div';

const ARITH: Record<ArithOp, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => {
    if (b === 0) throw new DataError('shape arithmetic: integer division by zero.');
    return Math.trunc(a / b);
  },
};

/** The activation dims a Dim reads ({ of, axis } leaves). */
export function dimLeaves(d: Dim): { of: string; axis: number }[] {
  if (typeof d === 'number') return [];
  return 'op' in d ? [...dimLeaves(d.a), ...dimLeaves(d.b)] : [d];
}

/** A Dim as text for messages: "x.shape[1]", "(x.shape[1] + 1) / 2". */
export function describeDim(d: Dim): string {
  if (typeof d === 'number') return String(d);
  if (!('op' in d)) return `${d.of}.shape[${d.axis}]`;
  const sign = { Add: '+', Sub: '-', Mul: '*', Div: '/' }[d.op];
  const side = (x: Dim) => (typeof x === 'object' && 'op' in x ? `(${describeDim(x)})` : describeDim(x));
  return `${side(d.a)} ${sign} ${side(d.b)}`;
}

/** A Dim's value, each activation dim read through `dimOf`. */
export function evalDim(d: Dim, dimOf: (of: string, axis: number) => number): number {
  if (typeof d === 'number') return d;
  return 'op' in d ? ARITH[d.op](evalDim(d.a, dimOf), evalDim(d.b, dimOf)) : dimOf(d.of, d.axis);
}

export interface Prepass {
  constants: Map<string, ConstTensor>;
  /** Folded 0-d or 1-d integer values that read an activation's shape (symbolic dims). */
  shapes: Map<string, { scalar: boolean; dims: Dim[] }>;
  /** Nodes computed here (Constant, Identity of a constant, shape arithmetic): not imported as ops. */
  folded: Set<Node>;
}

/** The values of an initializer or Constant tensor (float types as float32, integer types as numbers). */
export function tensorValues(t: TensorProto, where: string): ConstTensor {
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

/** Ops evaluated on integer shape vectors. */
const SHAPE_OPS = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Slice', 'Cast', 'Add', 'Sub', 'Mul', 'Div']);

type IntValue = { scalar: boolean; dims: Dim[] };

/** ONNX TensorProto data types that are integers (int8..int64, uint8..uint64). */
const INTEGER_TYPES = new Set([2, 3, 4, 5, 6, 7, 12, 13]);

/**
 * Runs the pre-pass. `nodes` in topological order; `opset` selects attribute vs input forms (Unsqueeze
 * and Squeeze axes became inputs in opset 13, Slice's in opset 10).
 */
export function prepass(initializers: TensorProto[], nodes: Node[], opset: number, source: string): Prepass {
  const constants = new Map<string, ConstTensor>();
  const shapes = new Map<string, IntValue>();
  const folded = new Set<Node>();
  for (const t of initializers) constants.set(t.name ?? '', tensorValues(t, `${source}: initializer`));

  /** A constant or folded integer value as a shape vector, or undefined when it is an activation. */
  const intValue = (name: string): IntValue | undefined => {
    const s = shapes.get(name);
    if (s) return s;
    const c = constants.get(name);
    if (!c) return undefined;
    if (c.values instanceof Float32Array) return undefined;
    return { scalar: c.dims.length === 0, dims: Array.from(c.values) };
  };

  /** Folded shapes are scalars or vectors; constants of rank 2 and more are not shape values. */
  const vectorOrScalar = (name: string) => shapes.has(name) || (constants.get(name)?.dims.length ?? 2) <= 1;

  for (const node of nodes) {
    const where = `${source}: node "${node.name ?? ''}" (${node.op_type})`;
    const ins = node.input ?? [];
    const out = node.output?.[0] ?? '';
    if (node.op_type === 'Constant') {
      const value = node.attribute?.find((a) => a.name === 'value')?.t;
      if (!value) throw new UnsupportedError(`${where}: only the "value" tensor attribute is supported.`);
      constants.set(out, tensorValues(value, where));
      folded.add(node);
      continue;
    }
    if (node.op_type === 'Identity' && constants.has(ins[0])) {
      constants.set(out, constants.get(ins[0])!);
      folded.add(node);
      continue;
    }
    if (!SHAPE_OPS.has(node.op_type ?? '')) continue;
    const value = foldShapeOp(node, ins, intValue, vectorOrScalar, opset, where);
    if (!value) continue;
    folded.add(node);
    if (value.dims.every((d) => typeof d === 'number')) constants.set(out, { dims: value.scalar ? [] : [value.dims.length], values: value.dims as number[] });
    else shapes.set(out, value);
  }
  return { constants, shapes, folded };
}

/** One shape op on integer vectors, or undefined when its data input is an activation (not a shape). */
function foldShapeOp(node: Node, ins: string[], intValue: (n: string) => IntValue | undefined, vectorOrScalar: (n: string) => boolean, opset: number, where: string): IntValue | undefined {
  const attr = (name: string) => node.attribute?.find((a) => a.name === name);
  const intAttr = (name: string, fallback: number) => Number(attr(name)?.i ?? fallback);
  const constInts = (name: string | undefined, what: string): number[] => {
    const v = name ? intValue(name) : undefined;
    if (!v || !v.dims.every((d) => typeof d === 'number')) throw new UnsupportedError(`${where}: ${what} "${name ?? ''}" must be a constant.`);
    return v.dims as number[];
  };
  switch (node.op_type) {
    case 'Shape': {
      // The shape of an activation: rank unknown here, so it is kept as "axis i of ins[0]" for i read later.
      const start = intAttr('start', 0);
      if (start !== 0 || attr('end')) throw new UnsupportedError(`${where}: start/end attributes are not supported.`);
      return { scalar: false, dims: [{ of: ins[0], axis: -1 }] };
    }
    case 'Cast': {
      // Only a cast to an integer type keeps integer arithmetic: PyTorch's true division of sizes casts
      // both sides to float first, and a float Div must not fold as a truncating one.
      if (!INTEGER_TYPES.has(intAttr('to', 0))) return undefined;
      return intValue(ins[0]);
    }
    case 'Gather': {
      const data = intValue(ins[0]);
      if (!data) return undefined;
      if (intAttr('axis', 0) !== 0) throw new UnsupportedError(`${where}: axis=${intAttr('axis', 0)} on a shape vector.`);
      const idx = intValue(ins[1]);
      if (!idx || !idx.dims.every((d) => typeof d === 'number')) throw new UnsupportedError(`${where}: the indices must be constant.`);
      const dims = (idx.dims as number[]).map((i) => pick(data, i, where));
      return { scalar: idx.scalar, dims };
    }
    case 'Unsqueeze': {
      const data = intValue(ins[0]);
      if (!data) return undefined;
      const axes = opset >= 13 ? constInts(ins[1], 'axes') : (attr('axes')?.ints ?? []).map(Number);
      if (!data.scalar || axes.length !== 1 || axes[0] !== 0) throw new UnsupportedError(`${where}: only a scalar unsqueezed to a 1-element vector is supported on shapes.`);
      return { scalar: false, dims: resolvedDims(data, where) };
    }
    case 'Squeeze': {
      const data = intValue(ins[0]);
      if (!data) return undefined;
      const dims = resolvedDims(data, where);
      if (data.scalar || dims.length !== 1) throw new UnsupportedError(`${where}: only a 1-element vector squeezed to a scalar is supported on shapes.`);
      return { scalar: true, dims };
    }
    case 'Concat': {
      const parts = ins.map(intValue);
      if (parts.some((p) => !p)) return undefined; // a tensor concatenation (channels), not shapes
      return { scalar: false, dims: parts.flatMap((p) => resolvedDims(p!, where)) };
    }
    case 'Slice': {
      const data = intValue(ins[0]);
      if (!data) return undefined;
      const [starts, ends] = opset >= 10 ? [constInts(ins[1], 'starts'), constInts(ins[2], 'ends')] : [(attr('starts')?.ints ?? []).map(Number), (attr('ends')?.ints ?? []).map(Number)];
      const steps = opset >= 10 && ins[4] ? constInts(ins[4], 'steps') : [1];
      if (starts.length !== 1 || steps[0] !== 1 || starts[0] < 0 || ends[0] < starts[0]) throw new UnsupportedError(`${where}: only a forward slice from a non-negative start is supported on shapes.`);
      const dims: Dim[] = [];
      for (let i = starts[0]; i < ends[0]; i++) {
        if (isWholeShape(data)) {
          if (ends[0] > 8) throw new UnsupportedError(`${where}: slicing a shape to its end needs its rank, which is known only when the model runs.`);
        } else if (i >= data.dims.length) break;
        dims.push(pick(data, i, where));
      }
      return { scalar: false, dims };
    }
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      // Integer arithmetic on shape values (an activation or a float constant operand: an op of the model).
      const [a, b] = [intValue(ins[0]), intValue(ins[1])];
      if (!a || !b || !vectorOrScalar(ins[0]) || !vectorOrScalar(ins[1])) return undefined;
      const [da, db] = [resolvedDims(a, where), resolvedDims(b, where)];
      // Anything but elementwise or one-against-many on non-empty vectors is left to the op importers.
      if (!da.length || !db.length || (da.length !== db.length && da.length !== 1 && db.length !== 1)) return undefined;
      const op = node.op_type as ArithOp;
      const dims = Array.from({ length: Math.max(da.length, db.length) }, (_, i): Dim => {
        const [x, y] = [da[da.length === 1 ? 0 : i], db[db.length === 1 ? 0 : i]];
        return typeof x === 'number' && typeof y === 'number' ? ARITH[op](x, y) : { op, a: x, b: y };
      });
      return { scalar: a.scalar && b.scalar, dims };
    }
  }
  return undefined;
}

const isWholeShape = (v: IntValue) => v.dims.length === 1 && typeof v.dims[0] === 'object' && !('op' in v.dims[0]) && v.dims[0].axis === -1;

function pick(data: IntValue, i: number, where: string): Dim {
  if (isWholeShape(data)) {
    if (i < 0) throw new UnsupportedError(`${where}: a negative index into a shape needs its rank, which is known only when the model runs.`);
    return { of: (data.dims[0] as { of: string }).of, axis: i };
  }
  const d = data.dims[i < 0 ? data.dims.length + i : i];
  if (d === undefined) throw new DataError(`${where}: index ${i} is outside a shape of ${data.dims.length} values.`);
  return d;
}

function resolvedDims(v: IntValue, where: string): Dim[] {
  if (isWholeShape(v)) throw new UnsupportedError(`${where}: a whole shape vector whose rank is known only when the model runs.`);
  return v.dims;
}

/** The dims of a folded shape at run time, each symbolic dim read from its activation's actual shape. */
export function resolveDims(dims: readonly Dim[], shapeOf: (value: string) => readonly number[]): number[] {
  return dims.map((d) => evalDim(d, (of, axis) => shapeOf(of)[axis]));
}
