/**
 * What one op spec says (src/graph/ops.ts assembles them): its channel rule, whether zero stays zero, its
 * ONNX export and the ONNX op types it imports, with the contexts the ONNX drivers (src/onnx/export.ts,
 * src/onnx/import.ts) hand to them.
 */
import type { Module } from '../nn/module.js';
import type { ConstTensor, Dim } from '../onnx/prepass.js';
import { AttributeType, type Attribute, type Node } from '../onnx/proto.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * How an op's output channels relate to its inputs' (the pruner's dependency graph):
 *   layer    the op of a registered layer kind (its weight is inputs[1]); the kind decides (new space or same)
 *   preserve output channel c is channel c of the first input (elementwise ops, pooling)
 *   merge    every operand and the output share one channel space (residual add, and a channel-broadcast
 *            mul: a squeeze-excitation gate [N, C, 1, 1] merges with the gated [N, C, H, W]; an operand
 *            without the output's channels, e.g. a scalar, carries none)
 *   flatten  [N, C, H, W] -> [N, C*H*W]: channel c becomes H*W consecutive columns
 *   concat   along channels: input i's channel c is output channel offset_i + c (other axes: merge)
 *   slice    along channels: output channel c is input channel start + c (other axes: preserve)
 *   none     no channel rule: tracing a model that uses it for pruning is refused, naming it
 */
export type ChannelRule = 'layer' | 'preserve' | 'merge' | 'flatten' | 'concat' | 'slice' | 'none';

export const CHANNEL_RULES: Readonly<Record<ChannelRule, string>> = {
  layer: 'the layer kind decides (Conv2d, Linear: new channels; BatchNorm2d, depthwise conv: same channels)',
  preserve: 'output channel c is input channel c',
  merge: 'all operands and the output share one channel space (pruned together)',
  flatten: 'channel c becomes H*W consecutive features of the next Linear',
  concat: 'along channels: input i channel c is output channel offset_i + c',
  slice: 'along channels: output channel c is input channel start + c',
  none: 'not prunable through: refused with its name',
};

/** What an op's ONNX export writes with (implemented by src/onnx/export.ts). */
export interface OnnxExportContext {
  opset: number;
  /** Owner of a parameter tensor (the layer whose weight it is). */
  owner(weight: Tensor): Module | undefined;
  /** The ONNX value name of a tensor already written (an earlier op's output or the graph input). */
  input(t: Tensor): string;
  /** The initializer of a model parameter or buffer, written once, named as in the state_dict. */
  param(t: Tensor, role?: string): string;
  /** The state_dict name of a parameter or buffer, without writing it. */
  paramName(t: Tensor, role: string): string;
  /** Writes an initializer under exactly `name` (values read after the trace). */
  initializer(name: string, dims: number[], values: () => Promise<Float32Array | BigInt64Array>, dataType?: number): string;
  /** A fresh name: `base`, or `base_1`, ... */
  unique(base: string): string;
  /** The node's name base for an op: its module path, or the op and a counter. */
  nameOf(t: Tensor): string;
  /** The batch-norm op folded into this conv2d op by the pairing rule (src/graph/pairing.ts), if any. */
  foldedBatchNorm(convOp: Tensor): Tensor | undefined;
  /** Writes one node computing `t` (its output is named after `t`). */
  emit(t: Tensor, opType: string, inputs: string[], attributes?: Attribute[]): void;
  /** Writes an intermediate node of a multi-node export of `t`; returns its output's name. */
  intermediate(t: Tensor, opType: string, inputs: string[], attributes?: Attribute[]): string;
}

/** What an op's ONNX importer works with, one ONNX node at a time (implemented by src/onnx/import.ts). */
export interface OnnxImportContext {
  /** `<file>: node "<name>" (<op type>)`, to begin error messages with. */
  where: string;
  opset: number;
  node: Node;
  /** The node's non-empty inputs. */
  inputs: string[];
  /** Refuses any attribute not listed (UnsupportedError naming it). */
  allowOnly(names: string[]): void;
  int(name: string, fallback: number): number;
  float(name: string, fallback: number): number;
  ints(name: string): number[] | undefined;
  text(name: string, fallback: string): string;
  /** A constant value (initializer, Constant, or folded by the pre-pass), or undefined for an activation. */
  constant(name: string): ConstTensor | undefined;
  /** A folded shape vector (its dims may read an activation's size at run time), or undefined. */
  shape(name: string): { scalar: boolean; dims: Dim[] } | undefined;
  /** Input i as constant data; a DataError naming `role` when it is computed in the graph. */
  weight(i: number, role: string): ConstTensor;
  /** The graph input's static batch size, when it has one. */
  staticBatch: number | undefined;
  /** How many nodes (and graph outputs) read a value. */
  readers(value: string): number;
  /** The node writing a value. */
  producer(value: string): Node | undefined;
  /** The nodes reading a value, in graph order. */
  readersOf(value: string): Node[];
  /** Adds an engine layer, named after its weight initializer or the node's scope, uniquely. */
  addLayer<M extends Module>(m: M): M;
  /** At run time, computes the node's output (or `output`) from `inputs` (default: the first input). */
  step(run: (xs: Tensor[]) => Tensor, inputs?: string[], output?: string): void;
  /** Runs a layer on the first input. */
  layerStep(m: Module): void;
  /** Drops the step computing `output` (a node fused into this one); false when there is none. */
  dropStep(output: string): boolean;
  /** Marks a later node as imported by this one (e.g. MatMul and its bias Add as one Linear). */
  skip(node: Node): void;
}

export type OnnxImporter = (ctx: OnnxImportContext) => void;

export interface OpSpec {
  name: string;
  /** One line for the README's op table. */
  summary: string;
  channels: ChannelRule;
  /**
   * Whether a zero input channel gives a zero output channel (relu(0) = 0, but sigmoid(0) = 0.5), or a
   * function of the recorded attrs (clip: when min <= 0 <= max). "Pruning = zeroing only the pruned
   * producer rows" holds through these ops only. prune() does not depend on it: a pruned channel loses
   * its producer rows and every reader's columns (removed, or zeroed when dimensionality-preserving), so
   * what the channel carries in between never reaches the output (test/graph.test.ts, "ops where zero
   * does not stay zero"). Shown in the README's op table.
   */
  zeroStaysZero: boolean | ((attrs: Readonly<Record<string, number>>) => boolean);
  onnx?: {
    /** ONNX op types the export writes (for docs). */
    exportsAs: string[];
    export?(t: Tensor, ctx: OnnxExportContext): void;
    /** Importers by ONNX op type: each builds this op (or a pattern around it) from one node. */
    importers?: Readonly<Record<string, OnnxImporter>>;
  };
}

export const ints = (name: string, values: number[]): Attribute => ({ name, type: AttributeType.INTS, ints: values });
export const int = (name: string, value: number): Attribute => ({ name, type: AttributeType.INT, i: value });
export const float = (name: string, value: number): Attribute => ({ name, type: AttributeType.FLOAT, f: value });
