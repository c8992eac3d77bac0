/**
 * Structured pruning and Intra-Fusion (spec sections 1-4), mirroring the reference's
 * `MetaPruner(model, importance, pruning_ratio, optimal_transport, dimensionality_preserving).step(group_idxs)`:
 *
 *   1. fold every batch-norm into its conv (always, for default pruning and Intra-Fusion alike);
 *   2. per group: importance, then keep the k most important of its n channels;
 *   3. build the k x n map M: a 0/1 selection of the kept channels (default pruning), or the
 *      optimal-transport fusion map (Intra-Fusion, `fusion: 'ot'` or an `optimalTransport` given);
 *   4. apply M through the layer registry: producers W' = M W and b' = M b, consumers W'[:, j] =
 *      sum_i M[j, i] W[:, i], batch-norms index-selected (they are the identity after folding). Sparse
 *      maps (selections, exact transport maps) are applied by gathering their entries, never as a product
 *      with their zeros (kernels/prune.ts).
 *
 * Modes:
 *   - sequential (the default for one step without `global`: given `groupIdxs`, a `sparsity` map's groups or
 *     the whole network): the reference's order: each group is scored and pruned on the weights earlier
 *     groups already changed, one OT problem at a time; k = floor(n (1 - s)) of the group's current width n;
 *   - batched (`batchGroups`, `global`, `iterativeSteps` > 1):
 *     per step, every group is scored on the same weights (taylor: one shared gradient pass), all OT
 *     problems are solved in ONE `optimalTransport.maps` call (Sinkhorn: one GPU batch), then all maps are
 *     applied (a map acts on a layer's rows or columns, so maps of different groups commute);
 *     k = floor(n0 (1 - s)) of the original width n0 at the step's sparsity s (linear schedule s * t / steps).
 *   - global: the channels with the lowest importance / group mean over all groups are pruned, so that
 *     floor(N0 s) of the N0 original channels are gone, no group losing more than `maxGroupSparsity`.
 * Every kept count is rounded down to a multiple of `roundTo`, at least one multiple (at most the group's width).
 *
 * The model is changed in place; reload or rebuild it to prune again from the original weights.
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { OptimalTransport } from '../ot/transport.js';
import { foldBatchNormPairs, releaseFolded, restoreUnpruned, unfoldBiases, type FoldedPair } from './bn-fold.js';
import { assertCriterion, groupImportance, splitByImportance, type Criterion } from './criteria.js';
import { groupFeatureAxes, groupFeatures, groupLayers } from './features.js';
import { dependencyGroups, exampleShape, type ExampleInput, type Group } from './groups.js';
import { applyMaps } from './apply.js';
import { blockDiagonal, featuresOverBlocks, indicesInEveryBlock, meanOverBlocks } from './blocks.js';
import { FUSION_METHODS, fusionMethod, type Fusion, type GroupChoice, type GroupMap } from './methods.js';
import { taylorGradients } from './taylor.js';
import type { ImportanceOptions } from './calibration.js';

export type { Fusion };

export interface PruneOptions extends ImportanceOptions {
  importanceCriteria: Criterion | string;
  /** Fraction of channels to remove, in [0, 1): one for every group, or per group index (those groups only). */
  sparsity: number | Record<number, number>;
  /** Groups to prune (index 0 nearest the output), one after another; default: all (or the map's keys) at once. */
  groupIdxs?: number[];
  /** Default: 'ot' when `optimalTransport` is given, else 'none' (default pruning). */
  fusion?: Fusion;
  /** The OT settings for Intra-Fusion (default settings when `fusion: 'ot'` and none given). */
  optimalTransport?: OptimalTransport | null;
  /** Keep layer shapes: zero pruned rows/columns (default) or place fused rows at the kept indices (IF). */
  dimensionalityPreserving?: boolean;
  /** Fold batch-norms first (default true, as the reference always does). */
  foldBatchNorm?: boolean;
  /**
   * Reproduce the reference's quirks, for comparisons with its numbers: batch-norms folded without eps
   * (so even sparsity 0 changes the model), the biases folding adds to bias-free convs kept (other layout,
   * more parameters), and LAMP's permutation bug (`lampReferencePermutation`). Default false: the fold
   * uses each BN's eps and is handed back to the BN after pruning.
   */
  referenceQuirks?: boolean;
  /** One sample's input shape [c, h, w] (default [3, 32, 32]). */
  inputShape?: ExampleInput;
  /** @deprecated Use `inputShape`. */
  exampleInput?: ExampleInput;
  /** Layers whose outputs are never pruned; default: the layers producing the model output (the classifier). */
  ignoredLayers?: Module[];
  /** Rank channels of all pruned groups together (mean-normalised importance); `sparsity` must be a number. */
  global?: boolean;
  /** With `global`: no group loses more than this fraction of its original channels (default 0.9). */
  maxGroupSparsity?: number;
  /** Prune in this many steps (linear schedule, importance recomputed each step); default 1. */
  iterativeSteps?: number;
  /**
   * Score and fuse all groups of a one-step, non-global run on the same weights, with one OT call (one
   * Sinkhorn batch). Default false: groups go one after another on the weights earlier groups changed,
   * as the reference (and the paper's whole-network Table 1) does.
   */
  batchGroups?: boolean;
  /**
   * Kept channels per group rounded down to a multiple of this, at least one multiple (Torch-Pruning's
   * round_to); default 1. When it overrides the requested sparsity, onProgress gets a warning.
   */
  roundTo?: number;
  onProgress?: (message: string) => void;
}

export interface PrunedGroup {
  index: number;
  /** Iterative step (1-based; 1 outside iterative mode). */
  step: number;
  description: string;
  channels: number;
  kept: number;
  keptIdx: number[];
  prunedIdx: number[];
  importance: Float64Array;
  /** k x n map that was applied. */
  map: Float64Array;
  /** Intra-Fusion only. */
  transport?: { plan: Float64Array; cost: Float64Array; iterations?: number; converged?: boolean; marginalError?: number };
  seconds: { importance: number; transport: number; apply: number };
}

/** Channels kept out of n at a sparsity s: floor(n (1 - s)). */
export function keptCount(n: number, sparsity: number): number {
  return Math.floor(n * (1 - sparsity));
}

/**
 * Torch-Pruning's round_to: the kept count k rounded down to a multiple of roundTo, but at least one
 * multiple (and at most the group's n channels, when n itself is below roundTo).
 */
export function roundKept(k: number, n: number, roundTo: number): number {
  if (roundTo <= 1) return Math.min(n, k);
  return Math.min(n, Math.max(roundTo, Math.floor(k / roundTo) * roundTo));
}

const validSparsity = (s: number) => s >= 0 && s < 1;

interface Plan {
  idxs: number[];
  /** Sparsity per pruned group. */
  sparsityOf: Map<number, number>;
  sequential: boolean;
  steps: number;
  roundTo: number;
}

function plan(o: PruneOptions, groupCount: number): Plan {
  assertCriterion(o.importanceCriteria);
  const sparsityOf = new Map<number, number>();
  let idxs: number[];
  if (typeof o.sparsity === 'number') {
    if (!validSparsity(o.sparsity)) throw new ArgumentError(`prune: sparsity must be in [0, 1), got ${o.sparsity}.`);
    idxs = o.groupIdxs ?? Array.from({ length: groupCount }, (_, i) => i);
    for (const g of idxs) sparsityOf.set(g, o.sparsity);
  } else {
    if (o.global) throw new ArgumentError('prune: global ranking takes one sparsity for the whole network, not a map per group.');
    for (const [g, s] of Object.entries(o.sparsity)) {
      if (!validSparsity(s)) throw new ArgumentError(`prune: sparsity of group ${g} must be in [0, 1), got ${s}.`);
      sparsityOf.set(Number(g), s);
    }
    idxs = o.groupIdxs ?? [...sparsityOf.keys()];
    for (const g of idxs) if (!sparsityOf.has(g)) throw new ArgumentError(`prune: group ${g} is in groupIdxs but has no sparsity in the map.`);
  }
  const twice = idxs.find((g, i) => idxs.indexOf(g) !== i);
  if (twice !== undefined) throw new ArgumentError(`prune: group ${twice} is listed twice in groupIdxs (it would be pruned twice).`);
  for (const g of [...idxs, ...sparsityOf.keys()]) {
    if (!Number.isInteger(g) || g < 0 || g >= groupCount) {
      throw new ArgumentError(`prune: group index ${g} does not exist; this model has groups 0..${groupCount - 1}.`);
    }
  }
  const steps = o.iterativeSteps ?? 1;
  const roundTo = o.roundTo ?? 1;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new ArgumentError(`prune: iterativeSteps must be a positive integer, got ${steps}.`);
  if (!(Number.isInteger(roundTo) && roundTo >= 1)) throw new ArgumentError(`prune: roundTo must be a positive integer, got ${roundTo}.`);
  const maxS = o.maxGroupSparsity ?? 0.9;
  if (!(maxS > 0 && maxS < 1)) throw new ArgumentError(`prune: maxGroupSparsity must be in (0, 1), got ${maxS}.`);
  return { idxs, sparsityOf, sequential: !o.global && steps === 1 && !o.batchGroups, steps, roundTo };
}

/**
 * Kept counts under global ranking: the `total` least important channels over all groups (importance
 * divided by its group mean) are pruned, no group going below `floor` channels.
 */
function globalKept(importances: Float64Array[], current: number[], floors: number[], total: number): number[] {
  const candidates: { g: number; v: number }[] = [];
  importances.forEach((imp, g) => {
    const mean = imp.reduce((a, b) => a + b, 0) / imp.length;
    for (const v of imp) candidates.push({ g, v: mean > 0 ? v / mean : v });
  });
  candidates.sort((a, b) => a.v - b.v || a.g - b.g);
  const kept = [...current];
  let left = total;
  for (const { g } of candidates) {
    if (left <= 0) break;
    if (kept[g] > floors[g]) {
      kept[g]--;
      left--;
    }
  }
  return kept;
}

/**
 * Groups of one batch were traced together: once one shrinks by `removed` channels, the groups still to
 * apply sit that much further left wherever they follow it along the same axis of the same layer (a
 * producer split at a concat or a slice, a consumer of a concatenation, a cut).
 */
function shiftPendingOffsets(applied: Group, removed: number, pending: Group[]): void {
  const axes = (g: Group) => [
    ...[...g.outSlots, ...g.normSlots].map((s) => ({ axis: 'out', owner: s.layer as object, slot: s })),
    ...g.consumers.map((s) => ({ axis: 'in', owner: s.layer as object, slot: s })),
    ...g.viewSlots.map((s) => ({ axis: 'view', owner: s.slice as object, slot: s })),
  ];
  const shrunk = axes(applied);
  for (const { axis, owner, slot } of pending.flatMap(axes)) {
    const before = shrunk.filter((a) => a.axis === axis && a.owner === owner && a.slot.offset < slot.offset).length;
    slot.offset -= before * removed;
  }
}

/** Prunes (or, with optimal transport, fuses) the requested groups of `model` in place. */
export async function prune(model: Module, o: PruneOptions): Promise<PrunedGroup[]> {
  const criterion = assertCriterion(o.importanceCriteria);
  const progress = o.onProgress ?? (() => {});
  const exampleInput = exampleShape(o);
  const graph = { inputShape: exampleInput, ignored: o.ignoredLayers };
  const method = fusionMethod(o.fusion ?? (o.optimalTransport ? 'ot' : 'none'));
  if (!method) throw new ArgumentError(`prune: fusion must be ${FUSION_METHODS.map((m) => `"${m.name}"`).join(', ')}, got "${o.fusion as string}".`);
  if (o.dimensionalityPreserving && o.foldBatchNorm === false) {
    // A pruned channel stays zero through a batch-norm only once the BN is folded to the identity.
    throw new ArgumentError('prune: dimensionalityPreserving needs batch-norm folding (foldBatchNorm: false would let pruned channels leak the BN shift).');
  }
  if (!method.keepsChannels && (o.dimensionalityPreserving || o.foldBatchNorm === false)) {
    // Folded channels are cluster centroids, not kept channels: they have no original index to stay at,
    // and an unfolded batch-norm's statistics cannot be merged the same way.
    throw new ArgumentError(`prune: fusion "${method.name}" needs batch-norm folding and cannot preserve dimensionality.`);
  }
  const methodContext = {
    optimalTransport: o.optimalTransport ?? new OptimalTransport(),
    // k-means seeding for folding: drawn from `random` when given, so a seeded run is reproducible.
    seed: () => Math.floor((o.random ? o.random() : 0) * 2 ** 31),
    progress,
  };
  const dimPreserving = o.dimensionalityPreserving ?? false;
  const importanceOptions = { ...o, inputShape: exampleInput, lampReferencePermutation: o.lampReferencePermutation || o.referenceQuirks };
  const original = dependencyGroups(model, graph);
  const p = plan(o, original.length);
  const folding = o.foldBatchNorm ?? true;
  const folded: FoldedPair[] = folding ? await foldBatchNormPairs(model, exampleInput, { referenceQuirks: o.referenceQuirks }) : [];
  try {
    if (folding) progress(`folded ${folded.length} batch-norms`);
    /** Every layer a pruned group reached (its producers, batch-norms and consumers). */
    const touched = new Set<Module>();
    // The reference keeps every pair folded and the biases folding added; otherwise the layers pruning did
    // not reach get their exact original values back and the rest their own layout.
    const finish = async () => {
      if (!o.referenceQuirks) await unfoldBiases(restoreUnpruned(folded, touched));
      return report;
    };
    const report: PrunedGroup[] = [];

    /** Importance of each group in the batch, all from the current weights. */
    const score = async (groups: Group[], batch: number[]) => {
      const t0 = performance.now();
      const importance = new Map<number, Float64Array>();
      // Groups scored on the same weights share one set of taylor gradients (as the reference's single
      // backward pass before pruning), instead of one set of training batches per group.
      const gradients = criterion === 'taylor' && batch.length > 1
        ? await taylorGradients(model, [...new Set(batch.flatMap((g) => groupLayers(groups[g])))], importanceOptions) : undefined;
      for (const g of batch) importance.set(g, await groupImportance(model, groups[g], criterion, { ...importanceOptions, gradients }));
      return { importance, seconds: (performance.now() - t0) / 1e3 };
    };
    /** The kept count rounded to `roundTo`, with a warning when that changes what the sparsity asked for. */
    const rounded = (g: number, requested: number, n: number, of: number) => {
      const k = roundKept(requested, n, p.roundTo);
      if (k !== requested) progress(`warning: roundTo ${p.roundTo} keeps ${k} of group ${g}'s ${of} channels where the sparsity asks for ${requested}${k >= n ? ' (nothing pruned)' : ''}`);
      return k;
    };
    /** Kept channels, maps (one OT call for the whole batch) and their application, group by group. */
    const pruneBatch = async (step: number, groups: Group[], scores: { importance: Map<number, Float64Array>; seconds: number }, keptOf: (g: number, n: number) => number) => {
      const t1 = performance.now();
      // The methods choose on block-reduced channels (blocks.ts) where a grouped conv needs equal blocks.
      const chosen: GroupChoice[] = [...scores.importance].map(([g, fullImportance]) => {
        const group = groups[g];
        const G = group.blocks;
        const n = group.channels / G;
        const k = Math.floor(keptOf(g, group.channels) / G);
        if (k < 1) throw new ArgumentError(`prune: sparsity ${p.sparsityOf.get(g)} leaves no channel of group ${g} (${group.channels} channels${G > 1 ? ` in ${G} equal blocks` : ''}).`);
        const importance = G > 1 ? meanOverBlocks(fullImportance, G) : fullImportance;
        return {
          g, group, importance, n, k, ...splitByImportance(importance, k),
          features: async () => {
            const f = await groupFeatures(group);
            return G > 1 ? featuresOverBlocks(f.X, f.D, G) : f;
          },
          featureAxes: () => (G > 1 ? null : groupFeatureAxes(group)),
        };
      });
      // Default pruning and Intra-Fusion apply one map to producers and consumers; a fusion that merges
      // neurons by averaging (model folding) passes its own consumer map.
      const maps: GroupMap[] = await method.maps(chosen, methodContext);
      const t2 = performance.now();
      chosen.forEach((c, i) => {
        const a0 = performance.now();
        const G = c.group.blocks;
        const full = (map: Float64Array) => (G > 1 ? blockDiagonal(map, c.k, c.n, G) : map);
        const map = full(maps[i].map);
        const keptIdx = indicesInEveryBlock(c.keptIdx, c.n, G);
        const prunedIdx = indicesInEveryBlock(c.pruned, c.n, G);
        for (const layer of [...groupLayers(c.group), ...c.group.batchNorms]) touched.add(layer);
        applyMaps(c.group, map, maps[i].consumerMap ? full(maps[i].consumerMap) : map, keptIdx, dimPreserving);
        if (!dimPreserving) shiftPendingOffsets(c.group, c.group.channels - keptIdx.length, chosen.slice(i + 1).map((p) => p.group));
        const description = c.group.describe();
        progress(`${method.verb} ${description}: kept ${keptIdx.length} of ${c.group.channels}${p.steps > 1 ? ` (step ${step} of ${p.steps})` : ''}`);
        report.push({
          index: c.g, step, description, channels: c.group.channels, kept: keptIdx.length, keptIdx, prunedIdx, importance: scores.importance.get(c.g)!,
          map, transport: maps[i].transport,
          // Scoring and transport are shared by the batch: each group reports its share.
          seconds: { importance: scores.seconds / chosen.length, transport: (t2 - t1) / 1e3 / chosen.length, apply: (performance.now() - a0) / 1e3 },
        });
      });
    };

    if (p.sequential) {
      for (const g of p.idxs) {
        const groups = dependencyGroups(model, graph); // channel counts change as earlier groups are pruned
        await pruneBatch(1, groups, await score(groups, [g]), (_, n) => rounded(g, keptCount(n, p.sparsityOf.get(g)!), n, n));
      }
      return await finish();
    }
    const n0 = original.map((g) => g.channels);
    const maxS = o.maxGroupSparsity ?? 0.9;
    for (let step = 1; step <= p.steps; step++) {
      const groups = dependencyGroups(model, graph);
      const fraction = step / p.steps;
      const scores = await score(groups, p.idxs);
      let keptOf: (g: number, n: number) => number;
      if (o.global) {
        const s = (o.sparsity as number) * fraction;
        const current = p.idxs.map((g) => groups[g].channels);
        const floors = p.idxs.map((g) => Math.max(1, Math.ceil(n0[g] * (1 - maxS))));
        const total = p.idxs.reduce((t, g) => t + n0[g], 0);
        const alreadyPruned = p.idxs.reduce((t, g, i) => t + n0[g] - current[i], 0);
        const kept = globalKept(p.idxs.map((g) => scores.importance.get(g)!), current, floors, total - keptCount(total, s) - alreadyPruned);
        const keptByGroup = new Map(p.idxs.map((g, i) => [g, rounded(g, kept[i], current[i], n0[g])]));
        keptOf = (g) => keptByGroup.get(g)!;
      } else {
        keptOf = (g, n) => Math.min(n, rounded(g, keptCount(n0[g], p.sparsityOf.get(g)! * fraction), n0[g], n0[g]));
      }
      await pruneBatch(step, groups, scores, keptOf);
    }
    return await finish();
  } finally {
    // The weight copies of the fold (restoreUnpruned's originals), also when a step threw.
    releaseFolded(folded);
  }
}
