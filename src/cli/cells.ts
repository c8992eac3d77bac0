/**
 * Which cells a run prunes: one per (group, sparsity) in group mode, one per sparsity for the whole
 * network (--whole-network, --global), or one for per-group ratios (--group-sparsity); and which methods
 * each cell runs (--fusion).
 */
import { FUSION_METHODS } from '../prune/methods.js';
import { UsageError } from './args.js';
import type { Fusion, RunMode, RunOptions, Shard } from './run-flags.js';

/** A method of the fusion-method table (result key, prune() fusion, label). */
export type Method = (typeof FUSION_METHODS)[number];
export type MethodKey = (typeof FUSION_METHODS)[number]['key'];

export interface Cell {
  /** The group pruned, -1 for every group. */
  g: number;
  /** The sparsity, -1 with per-group ratios. */
  s: number;
  /** What prune() gets as `sparsity`. */
  sparsity: number | Record<number, number>;
  /** In checkpoint file names: g2_s0.5, gall_s0.5, gs1=0.3-2=0.5. */
  name: string;
  /** In log lines: "group 2 sparsity 0.5". */
  where: string;
}

/** The methods --fusion picks, in table order: one by name, 'both' (default pruning and Intra-Fusion) or 'all'. */
export function methodsFor(fusion: Fusion): Method[] {
  return FUSION_METHODS.filter((m) => fusion === 'all' || fusion === m.name || (fusion === 'both' && (m.name === 'none' || m.name === 'ot')));
}

/** The cells of the run; group indices are checked against the model's `groupCount` groups. */
export function planCells(o: RunOptions, modelName: string, groupCount: number): Cell[] {
  const checked = o.mode === 'group' ? o.groups : o.mode === 'per-group' ? Object.keys(o.groupSparsity!).map(Number) : [];
  for (const g of checked) if (g < 0 || g >= groupCount) throw new UsageError(`--${o.mode === 'group' ? 'group_idxs' : 'group-sparsity'}: ${modelName} has groups 0..${groupCount - 1}, not ${g}.`);
  if (o.mode === 'per-group') {
    const pairs = Object.entries(o.groupSparsity!).map(([k, v]) => `${k}=${v}`);
    return [{ g: -1, s: -1, sparsity: o.groupSparsity!, name: cellName(-1, -1, o.groupSparsity), where: `groups ${pairs.join(',')}` }];
  }
  if (o.mode === 'group') return o.groups.flatMap((g) => o.sparsities.map((s) => ({ g, s, sparsity: s, name: cellName(g, s), where: `group ${g} sparsity ${s}` })));
  return o.sparsities.map((s) => ({ g: -1, s, sparsity: s, name: cellName(-1, s), where: `all groups (${o.mode as Exclude<RunMode, 'group' | 'per-group'>}) sparsity ${s}` }));
}

/** A cell's name (g2_s0.5, gall_s0.5, gs1=0.3-2=0.5), from its group, sparsity and per-group ratios (as a results entry has them). */
export function cellName(g: number, s: number, groupSparsity?: Record<number, number>): string {
  if (groupSparsity) return `gs${Object.entries(groupSparsity).map(([k, v]) => `${k}=${v}`).join('-')}`;
  return g === -1 ? `gall_s${s}` : `g${g}_s${s}`;
}

/**
 * The cells of one shard (--shard I/N): cells I, I+N, I+2N, ... of the plan, whose order is fixed by the
 * flags (group mode: each group of --group_idxs in the order given, each of its --sparsities in order;
 * otherwise each sparsity in order). Every cell keeps its place in the whole plan (its seed), so a
 * sharded cell equals the same cell of an unsharded run.
 */
export function shardCells(cells: Cell[], shard: Shard | undefined): Cell[] {
  return shard ? cells.filter((_, i) => i % shard.count === shard.index) : cells;
}

/** A seed per (seed, cell, sparsity, method), so each method of each cell draws its own batches, reproducibly. */
export const cellSeed = (seed: number, cell: number, sparsity: number, fusion: string) =>
  seed * 1_000_003 + cell * 2003 + Math.round(sparsity * 1000) * 7 + FUSION_METHODS.findIndex((m) => m.name === fusion);
