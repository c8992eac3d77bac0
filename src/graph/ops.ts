/**
 * The op table: one typed spec per autograd op (src/graph/specs/*), read by the pruner's dependency graph
 * (channel rule), dimensionality-preserving pruning and the zeroed-dense tests (whether zero stays zero),
 * the ONNX exporter (export) and importer (importers by ONNX op type), and the README's op table
 * (generated from here). Adding an op is its kernel, its autograd function, its name in `OpName` and one
 * spec (or `registerOp` from outside the package).
 */
import { ArgumentError } from '../errors.js';
import type { OpName } from './op-names.js';
import { CHANNEL_RULES, type OnnxImporter, type OpSpec } from './op-spec.js';
import { adaptiveAvgPool2d, avgPool2d, maxPool2d } from './specs/pooling.js';
import { add, mul, scale } from './specs/arithmetic.js';
import { clip, hardSigmoid, hardSwish, relu, sigmoid, silu } from './specs/activations.js';
import { batchNorm2d, conv2d, linear } from './specs/layers.js';
import { concat, reshape, slice } from './specs/shape.js';

export type { OpName };
export { CHANNEL_RULES, float, int, ints, type ChannelRule, type OnnxExportContext, type OnnxImportContext, type OnnxImporter, type OpSpec } from './op-spec.js';

const noChannelRule = (name: OpName, summary: string): OpSpec => ({ name, summary, channels: 'none', zeroStaysZero: false });

/** Every op autograd records has its spec here: the table is keyed by the `OpName` union, so the compiler checks it. */
const BUILTIN_OPS: { readonly [K in OpName]: OpSpec } = {
  conv2d: conv2d,
  linear: linear,
  batchNorm2d: batchNorm2d,
  relu: relu,
  clip: clip,
  hardSigmoid: hardSigmoid,
  hardSwish: hardSwish,
  sigmoid: sigmoid,
  silu: silu,
  mul: mul,
  concat: concat,
  slice: slice,
  scale: scale,
  add: add,
  maxPool2d: maxPool2d,
  avgPool2d: avgPool2d,
  adaptiveAvgPool2d: adaptiveAvgPool2d,
  reshape: reshape,
  sum: noChannelRule('sum', 'sum of all elements (losses)'),
  mean: noChannelRule('mean', 'mean of all elements (losses)'),
  matmul: noChannelRule('matmul', 'matrix product of two activations'),
  crossEntropy: noChannelRule('crossEntropy', 'softmax cross-entropy loss'),
};

for (const [key, spec] of Object.entries(BUILTIN_OPS)) if (spec.name !== key) throw new Error(`op table: the spec under "${key}" is named "${spec.name}".`);
const OPS = new Map<string, OpSpec>(Object.values(BUILTIN_OPS).map((s) => [s.name, s]));

/**
 * Adds (or replaces) an op's spec: for an op recorded with `autograd.customOp(name, ...)` from outside
 * the package, or to change how a built-in op is treated. Its importers take over their ONNX op types.
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

/** The importer of an ONNX op type, from the spec that declares it (the latest registered wins), or undefined. */
export function onnxImporter(opType: string): OnnxImporter | undefined {
  let found: OnnxImporter | undefined;
  for (const spec of OPS.values()) found = spec.onnx?.importers?.[opType] ?? found;
  return found;
}

/** The ONNX op types the op specs import. */
export function onnxImportTypes(): string[] {
  return [...new Set(opSpecs().flatMap((s) => Object.keys(s.onnx?.importers ?? {})))];
}
