/**
 * A group's channel slices, shared by the importance criteria, Intra-Fusion's OT features and model
 * folding: the row W[c] of every layer whose out-channels the group prunes, and the column W[:, c] (H*W
 * columns after a flatten) of every layer whose in-channels it prunes. Biases are never used.
 */
import type { FeatureAxis } from '../kernels/prune.js';
import { getRuntime } from '../tensor/tensor.js';
import { layerKind, type ChannelAxis, type Prunable } from '../nn/kinds.js';
import type { Group } from './groups.js';

/** A weight axis holding a group's channels: the group's channel c is the axis's channel `channel(c)`. */
export interface GroupAxis {
  layer: Prunable;
  axis: ChannelAxis;
  channel(c: number): number;
}

/** The weight axes a group's channel slices come from: producers' out-rows, then consumers' in-columns, at their offsets. */
export function groupAxes(group: Group): GroupAxis[] {
  const axes: GroupAxis[] = [];
  for (const { layer, offset } of group.outSlots) axes.push({ layer, axis: layerKind(layer)!.outAxes(layer)[0], channel: (c) => offset + c });
  for (const { layer, factor, offset } of group.consumers) {
    const axis = layerKind(layer)!.inAxis(layer, factor);
    if (!axis) continue;
    // A grouped conv's weight holds one group's in-channels (dim 1): channel c is column c mod (in / groups).
    axes.push({ layer, axis, channel: axis.n < offset + group.channels ? (c) => c % axis.n : (c) => offset + c });
  }
  return axes;
}

/** Calls f(flat index) over channel c's slice of a tensor viewed as [rows, n, inner]. */
export function forSlice({ rows, n, inner }: ChannelAxis, c: number, f: (i: number) => void): void {
  for (let r = 0; r < rows; r++) {
    const base = (r * n + c) * inner;
    for (let t = 0; t < inner; t++) f(base + t);
  }
}

/**
 * OT features (spec section 4.1): row c concatenates, in group order, every producer row and consumer
 * column of channel c (folded weights; no bias, no BN parameters). Returns X (n x D, row-major).
 */
export async function groupFeatures(group: Group): Promise<{ X: Float64Array; D: number }> {
  const n = group.channels;
  const parts = await Promise.all(groupAxes(group).map(async ({ layer, axis, channel }) => ({ axis, channel, w: await layer.weight.data() })));
  const D = parts.reduce((d, { axis }) => d + axis.rows * axis.inner, 0);
  const X = new Float64Array(n * D);
  for (let c = 0; c < n; c++) {
    let at = c * D;
    for (const { axis, channel, w } of parts) forSlice(axis, channel(c), (i) => (X[at++] = w[i]));
  }
  return { X, D };
}

/**
 * groupFeatures' slices as views of the weights on the GPU (the transport cost gathers them there), or
 * null when a group takes only part of a layer's channels (concat offsets, grouped convs), or when its
 * feature matrix would take over half the largest GPU buffer (VGG16's classifier reading 7x7 maps of 512
 * channels: 420 MB): those are gathered on the host.
 */
export function groupFeatureAxes(group: Group): FeatureAxis[] | null {
  const axes = groupAxes(group);
  if (axes.some(({ axis, channel }) => axis.n !== group.channels || channel(0) !== 0)) return null;
  const D = axes.reduce((d, { axis }) => d + axis.rows * axis.inner, 0);
  const bytes = D * Math.ceil(group.channels / 4) * 4 * 4;
  const { maxStorageBufferBindingSize, maxBufferSize } = getRuntime().device.limits;
  if (bytes > Math.min(maxStorageBufferBindingSize, maxBufferSize) / 2) return null;
  return axes.map(({ layer, axis }) => ({ tensor: layer.weight, rows: axis.rows, inner: axis.inner }));
}

/** The layers whose weights a group's importance reads. */
export function groupLayers(group: Group): Prunable[] {
  return [...new Set([...group.producers, ...group.consumers.map((c) => c.layer)])];
}
