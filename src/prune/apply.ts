/**
 * Applying a group's k x n maps to its layers: each layer gets the map placed at the group's offsets in
 * its channels (identity on its other channels, which belong to other groups), through its layer kind.
 */
import { layerKind, type ChannelMap } from '../nn/kinds.js';
import type { Prunable } from '../nn/kinds.js';
import { disposeMap, uploadMap } from '../kernels/prune.js';
import type { Group } from './groups.js';

/**
 * The group's rows (rowsOut x n) placed in a layer of `width` channels at `offsets`: the rows of a
 * channel outside the group are the identity. Returns the full map (rows x width) and the original
 * channel each row keeps (for index-selected batch-norms).
 */
export function placeMap(rows: Float32Array, rowsOut: number, n: number, width: number, offsets: number[], keptIdx: number[]): { map: Float32Array; rows: number; kept: number[] } {
  if (width === n && offsets.length === 1 && offsets[0] === 0) return { map: rows, rows: rowsOut, kept: keptIdx };
  const starts = new Set(offsets);
  const total = width - offsets.length * (n - rowsOut);
  const map = new Float32Array(total * width);
  const kept: number[] = [];
  let r = 0;
  for (let ch = 0; ch < width;) {
    if (starts.has(ch)) {
      for (let j = 0; j < rowsOut; j++, r++) map.set(rows.subarray(j * n, (j + 1) * n), r * width + ch);
      for (const i of keptIdx) kept.push(ch + i);
      ch += n;
    } else {
      map[r++ * width + ch] = 1;
      kept.push(ch++);
    }
  }
  return { map, rows: total, kept };
}

/** Applies a producer map (to out-channels and norms) and a consumer map (to in-channels) to every layer of a group. */
export function applyMaps(group: Group, producerMap: Float64Array, consumerMap: Float64Array, keptIdx: number[], dimensionalityPreserving: boolean): void {
  const n = group.channels;
  const k = keptIdx.length;
  // In dimensionality-preserving mode each map is n x n: its k rows at the kept indices, zeros elsewhere.
  const rowsOut = dimensionalityPreserving ? n : k;
  const groupRows = (map: Float64Array) => {
    const rows = new Float32Array(rowsOut * n);
    for (let j = 0; j < k; j++) rows.set(map.subarray(j * n, (j + 1) * n), (dimensionalityPreserving ? keptIdx[j] : j) * n);
    return rows;
  };
  const P = groupRows(producerMap);
  const C = consumerMap === producerMap ? P : groupRows(consumerMap);
  const offsetsOf = (slots: { layer: Prunable; offset: number }[]) => {
    const byLayer = new Map<Prunable, number[]>();
    for (const s of slots) byLayer.set(s.layer, [...(byLayer.get(s.layer) ?? []), s.offset]);
    return byLayer;
  };
  // One upload per distinct placement (most layers hold the whole group at offset 0: one map for all).
  const uploaded = new Map<string, ChannelMap>();
  const mapFor = (rows: Float32Array, width: number, offsets: number[]) => {
    const key = `${rows === P ? 'P' : 'C'}:${width}:${offsets}`;
    let m = uploaded.get(key);
    if (!m) {
      const placed = placeMap(rows, rowsOut, n, width, offsets, dimensionalityPreserving ? [...Array(n).keys()] : keptIdx);
      const M = uploadMap(placed.map, placed.rows, width);
      uploaded.set(key, (m = { M, host: placed.map, rowsOut: placed.rows, keptIdx: placed.kept, dimensionalityPreserving }));
    }
    return m;
  };
  try {
    for (const [layer, offsets] of offsetsOf([...group.outSlots, ...group.normSlots])) {
      const kind = layerKind(layer)!;
      kind.applyOut(layer, mapFor(P, kind.outChannels(layer), offsets));
    }
    for (const [layer, offsets] of offsetsOf(group.consumers)) {
      const kind = layerKind(layer)!;
      const factor = group.consumers.find((c) => c.layer === layer)!.factor;
      kind.applyIn(layer, mapFor(C, kind.inChannels(layer) / factor, offsets), factor);
    }
    // Slices indexing into the group's channels keep cutting the same ones (their bounds move).
    for (const { slice, offset } of group.viewSlots) {
      if (dimensionalityPreserving) break;
      const offsets = group.viewSlots.filter((v) => v.slice === slice).map((v) => v.offset);
      if (offsets[0] === offset) slice.keepInputChannels(keptChannels(slice.width, n, offsets, keptIdx));
    }
  } finally {
    for (const m of uploaded.values()) disposeMap(m.M);
  }
}

/** The channels of a `width`-wide tensor left when a group of n at `offsets` keeps `keptIdx`, as indices into the old width. */
export function keptChannels(width: number, n: number, offsets: number[], keptIdx: number[]): number[] {
  const starts = new Set(offsets);
  const kept: number[] = [];
  for (let ch = 0; ch < width;) {
    if (starts.has(ch)) {
      for (const i of keptIdx) kept.push(ch + i);
      ch += n;
    } else kept.push(ch++);
  }
  return kept;
}
