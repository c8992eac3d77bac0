/**
 * Layer kinds: what the pruner, checkpoint resizing and FLOP counting know about a layer class. Supporting
 * a new layer is one `registerLayerKind(Class, kind)` call, from inside the package or outside it.
 *
 * A layer kind (keyed by class; subclasses inherit their base's kind) says:
 *   - how their op relates channels: 'new' (consume the input's channel space, produce a new one: Conv2d,
 *     Linear) or 'same' (output channel c is input channel c: BatchNorm2d, depthwise Conv2d);
 *   - their role in a group: 'weight' layers are scored and fused, 'norm' layers are channel-wise state
 *     that follows the kept channels;
 *   - their channel axes: each tensor viewed as [rows, n, inner] so channel c owns t[:, c, :] (the out-axis
 *     of a weight has rows = 1; the in-axis of a conv has rows = out, inner = kh * kw; of a Linear after a
 *     flatten, inner = the H*W columns of one channel). Importance slices, OT features and map application
 *     all read these views;
 *   - how they are resized to a checkpoint's shapes, and their multiply-accumulates.
 *
 * How channels flow through the autograd ops between layers is the op table's business (src/graph/ops.ts).
 */
import { UnsupportedError } from '../errors.js';
import { applyMap, disposeMap, selectionMap, uploadMap, type DeviceMap } from '../kernels/prune.js';
import { fromArray, Tensor, tidy } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d, Linear } from './layers.js';
import type { Module } from './module.js';

/** A module with a weight: what a layer kind prunes. */
export type Prunable = Module & { weight: Tensor };

/** A tensor of a layer viewed as [rows, n, inner] along one channel axis; `shape(k)` is its shape with k channels. */
export interface ChannelAxis {
  tensor: string;
  rows: number;
  n: number;
  inner: number;
  shape(k: number): number[];
}

/**
 * A k x n channel map on the GPU (rowsOut = k, or n in dimensionality-preserving mode) and the kept
 * channels. M is sparse (CSR) for selections and exact fusion maps: applying it reads only its entries.
 */
export interface ChannelMap {
  M: DeviceMap;
  /** M's values (rowsOut x n, row-major), for kinds that apply a part of it (a grouped conv's diagonal block). */
  host: Float32Array;
  rowsOut: number;
  keptIdx: number[];
  dimensionalityPreserving: boolean;
}

export interface LayerKind<L extends Module = Module> {
  name: string;
  role: 'weight' | 'norm';
  /** Throws UnsupportedError (naming the layer) for configurations outside the supported set. */
  flow(layer: L): 'new' | 'same';
  outChannels(layer: L): number;
  inChannels(layer: L): number;
  /**
   * Channels the layer needs pruned in equal blocks, the same channels of every block (a grouped conv:
   * its groups, for in- and out-channels); maps reaching it are then block-diagonal with equal blocks.
   * Default 1.
   */
  channelBlocks?(layer: L): number;
  /** Tensors indexed by out-channel; the first is the weight (importance slices and OT features). */
  outAxes(layer: L): ChannelAxis[];
  /** The weight's in-channel axis, `factor` columns per channel; null when in-channels are the out-channels. */
  inAxis(layer: L, factor: number): ChannelAxis | null;
  /** Applies the map to the out-channels (W' = M W) and updates the layer's width. */
  applyOut(layer: L, map: ChannelMap): void;
  /** Applies the map to the in-channels (W'[:, j] = sum_i M[j, i] W[:, i]) and updates the layer's width. */
  applyIn(layer: L, map: ChannelMap, factor: number): void;
  /**
   * Resizes a freshly built layer to a checkpoint (values are loaded afterwards): to the in/out counts a
   * self-describing checkpoint lists (`declared`), else to its tensor shapes (`shapeOf`), which also say
   * which optional tensors (a bias added by batch-norm folding) the file has.
   */
  resize(layer: L, shapeOf: (tensor: string) => number[] | undefined, declared?: { in: number; out: number }): void;
  /** Multiply-accumulates for one sample, given the layer's output shape [1, ...]. */
  macs(layer: L, outputShape: readonly number[]): number;
}

/**
 * M applied along the middle axis of the layer's tensor viewed as [rows, n, inner], on the GPU (for kinds'
 * applyOut / applyIn): a gather of M's entries (kernels/prune.ts), so default pruning copies the kept rows.
 */
export function mapAxis(layer: Module, axis: ChannelAxis, M: DeviceMap, rowsOut: number): void {
  if (M.k !== rowsOut || M.n !== axis.n) throw new UnsupportedError(`${layer.path || 'layer'}.${axis.tensor}: a ${M.k} x ${M.n} map cannot resize ${axis.n} channels to ${rowsOut}.`);
  const t = (layer as unknown as Record<string, Tensor>)[axis.tensor];
  const mapped = tidy(() => new Tensor(axis.shape(rowsOut), applyMap(M, t, axis.rows, axis.inner)).keep());
  layer.replaceTensor(axis.tensor, mapped);
}

const zeros = (shape: number[]) => fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);

const isDepthwise = (c: Conv2d) => c.groups > 1 && c.groups === c.inChannels && c.groups === c.outChannels;

const conv2dKind: LayerKind<Conv2d> = {
  name: 'Conv2d',
  role: 'weight',
  // Depthwise: output channel c reads input channel c only, one channel space. Grouped (1 < groups <
  // channels, ResNeXt, RegNet): a new space, pruned in `groups` equal blocks as Torch-Pruning does.
  flow: (c) => (isDepthwise(c) ? 'same' : 'new'),
  outChannels: (c) => c.outChannels,
  inChannels: (c) => c.inChannels,
  channelBlocks: (c) => (isDepthwise(c) ? 1 : c.groups),
  outAxes(c) {
    const rest = c.weight.shape.slice(1);
    const axes: ChannelAxis[] = [{ tensor: 'weight', rows: 1, n: c.outChannels, inner: c.weight.size / c.outChannels, shape: (k) => [k, ...rest] }];
    if (c.bias) axes.push({ tensor: 'bias', rows: 1, n: c.outChannels, inner: 1, shape: (k) => [k] });
    return axes;
  },
  inAxis(c) {
    if (conv2dKind.flow(c) === 'same') return null; // depthwise: the in-channel is the out-channel
    // Grouped: the weight's dim 1 holds one group's in-channels; in-channel c is column c mod (in / groups).
    const [out, perGroup, kh, kw] = c.weight.shape;
    return { tensor: 'weight', rows: out, n: perGroup, inner: kh * kw, shape: (k) => [out, k, kh, kw] };
  },
  applyOut(c, m) {
    const depthwise = conv2dKind.flow(c) === 'same';
    for (const axis of conv2dKind.outAxes(c)) mapAxis(c, axis, m.M, m.rowsOut);
    c.outChannels = m.rowsOut;
    if (depthwise) {
      c.inChannels = m.rowsOut;
      c.groups = m.rowsOut;
    }
  },
  applyIn(c, m) {
    const axis = conv2dKind.inAxis(c, 1);
    if (!axis) return;
    if (c.groups === 1) mapAxis(c, axis, m.M, m.rowsOut);
    else {
      // The map is block-diagonal with `groups` equal blocks (channelBlocks): the weight's dim 1 takes one block.
      const G = c.groups;
      const n = c.inChannels;
      if (m.rowsOut % G !== 0) throw new UnsupportedError(`${c.path || 'Conv2d'}: ${m.rowsOut} input channels do not split into its ${G} groups.`);
      const [rows, cols] = [m.rowsOut / G, n / G];
      const block = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) block.set(m.host.subarray(r * n, r * n + cols), r * cols);
      const B = uploadMap(block, rows, cols);
      try {
        mapAxis(c, axis, B, rows);
      } finally {
        disposeMap(B);
      }
    }
    c.inChannels = m.rowsOut;
  },
  resize(c, shapeOf, declared) {
    if (shapeOf('bias') && !c.bias) c.ensureBias();
    const w = shapeOf('weight');
    const size = declared ?? (w?.length === 4 ? { in: isDepthwise(c) ? w[0] : w[1] * c.groups, out: w[0] } : null);
    if (!size) return;
    const { in: inC, out: outC } = size;
    if (outC === c.outChannels && inC === c.inChannels) return;
    if (isDepthwise(c)) c.groups = outC;
    c.outChannels = outC;
    c.inChannels = inC;
    const [, , kh, kw] = c.weight.shape;
    c.replaceTensor('weight', zeros([outC, inC / c.groups, kh, kw]));
    if (c.bias) c.replaceTensor('bias', zeros([outC]));
  },
  macs: (c, [, out, oh, ow]) => out * oh * ow * c.weight.size / c.outChannels,
};

const linearKind: LayerKind<Linear> = {
  name: 'Linear',
  role: 'weight',
  flow: () => 'new',
  outChannels: (l) => l.outFeatures,
  inChannels: (l) => l.inFeatures,
  outAxes(l) {
    const axes: ChannelAxis[] = [{ tensor: 'weight', rows: 1, n: l.outFeatures, inner: l.inFeatures, shape: (k) => [k, l.inFeatures] }];
    if (l.bias) axes.push({ tensor: 'bias', rows: 1, n: l.outFeatures, inner: 1, shape: (k) => [k] });
    return axes;
  },
  inAxis: (l, factor) => ({ tensor: 'weight', rows: l.outFeatures, n: l.inFeatures / factor, inner: factor, shape: (k) => [l.outFeatures, k * factor] }),
  applyOut(l, m) {
    for (const axis of linearKind.outAxes(l)) mapAxis(l, axis, m.M, m.rowsOut);
    l.outFeatures = m.rowsOut;
  },
  applyIn(l, m, factor) {
    mapAxis(l, linearKind.inAxis(l, factor)!, m.M, m.rowsOut);
    l.inFeatures = m.rowsOut * factor;
  },
  resize(l, shapeOf, declared) {
    const w = shapeOf('weight');
    const size = declared ?? (w?.length === 2 ? { in: w[1], out: w[0] } : null);
    if (!size) return;
    const { in: inF, out: outF } = size;
    if (outF === l.outFeatures && inF === l.inFeatures) return;
    [l.outFeatures, l.inFeatures] = [outF, inF];
    l.replaceTensor('weight', zeros([outF, inF]));
    if (l.bias) l.replaceTensor('bias', zeros([outF]));
  },
  macs: (l) => l.inFeatures * l.outFeatures,
};

const BN_TENSORS = ['weight', 'bias', 'running_mean', 'running_var'] as const;

const batchNorm2dKind: LayerKind<BatchNorm2d> = {
  name: 'BatchNorm2d',
  role: 'norm',
  flow: () => 'same',
  outChannels: (b) => b.numFeatures,
  inChannels: (b) => b.numFeatures,
  outAxes: (b) => BN_TENSORS.map((tensor) => ({ tensor, rows: 1, n: b.numFeatures, inner: 1, shape: (k) => [k] })),
  inAxis: () => null,
  // Index selection, not M: after folding the BN is the identity per channel, so selecting equals any
  // map; unfolded running statistics cannot be fused linearly. In dimensionality-preserving mode a pruned
  // channel arrives as zeros and a folded BN keeps it zero, so the BN is left as it is.
  applyOut(b, m) {
    if (m.dimensionalityPreserving) return;
    const k = m.keptIdx.length;
    const select = selectionMap(m.keptIdx, b.numFeatures);
    try {
      for (const axis of batchNorm2dKind.outAxes(b)) mapAxis(b, axis, select, k);
    } finally {
      disposeMap(select);
    }
    b.numFeatures = k;
  },
  applyIn: () => {},
  resize(b, shapeOf, declared) {
    const w = shapeOf('weight');
    const outC = declared?.out ?? (w?.length === 1 ? w[0] : null);
    if (outC === null || outC === b.numFeatures) return;
    b.numFeatures = outC;
    for (const name of BN_TENSORS) b.replaceTensor(name, zeros([outC]));
  },
  macs: () => 0,
};

// Most specific class first is not needed: lookup walks the prototype chain from the module's own class.
const LAYER_KINDS = new Map<Function, LayerKind<never>>([
  [Conv2d, conv2dKind],
  [Linear, linearKind],
  [BatchNorm2d, batchNorm2dKind],
]);

/**
 * Makes a layer class prunable (and resizable from checkpoints, and counted in FLOPs): its instances and
 * those of its subclasses get `kind`. Registering a class again replaces its kind. The class's forward
 * must record one of the layer ops (conv2d, linear, batchNorm2d, or an op registered with `registerOp`
 * with channel rule 'layer') whose weight, inputs[1], is the layer's own parameter.
 */
export function registerLayerKind<L extends Module>(layerClass: abstract new (...args: never[]) => L, kind: LayerKind<L>): void {
  LAYER_KINDS.set(layerClass, kind as unknown as LayerKind<never>);
}

/** The registered layer kinds, by name (for docs and error messages). */
export function layerKindNames(): string[] {
  return [...LAYER_KINDS.values()].map((k) => k.name);
}

/** The layer kind of a module (its class or nearest registered base class), or undefined. */
export function layerKind(m: Module): LayerKind | undefined {
  for (let p = Object.getPrototypeOf(m); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const kind = LAYER_KINDS.get(p.constructor);
    if (kind) return kind as unknown as LayerKind;
  }
  return undefined;
}

