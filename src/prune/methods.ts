/**
 * The fusion methods as one table of strategies: how a group's k x n map is built once its channels are
 * scored. prune() (`fusion`), the CLI (--fusion), the results JSON (keys) and the plots (labels) all read
 * this table; adding a method is one entry here.
 *
 *   none     default pruning: the 0/1 selection of the k most important channels
 *   ot       Intra-Fusion: the optimal-transport map from all n channels onto the k kept ones
 *   folding  model folding: k-means clusters of the channels, producers averaged, consumers summed
 */
import type { FeatureAxis } from '../kernels/prune.js';
import { OptimalTransport, type OtProblem } from '../ot/transport.js';
import type { Group } from './groups.js';
import { foldingMaps } from './model-folding.js';

/**
 * One group of a batch, scored and split: keep `keptIdx` (k of n). For a group pruned in equal blocks
 * (a grouped conv) n, k, the indices, importance and features are block-reduced; prune() repeats the map
 * in every block.
 */
export interface GroupChoice {
  g: number;
  group: Group;
  importance: Float64Array;
  n: number;
  k: number;
  keptIdx: number[];
  pruned: number[];
  /** The channels' features X (n x D): producer rows and consumer columns (features.ts). */
  features(): Promise<{ X: Float64Array; D: number }>;
  /** The same features as views of the weights on the GPU, or null where they are block-reduced on the host. */
  featureAxes(): FeatureAxis[] | null;
}

/** A group's maps: `map` (k x n) for producers, `consumerMap` for consumers when it differs. */
export interface GroupMap {
  map: Float64Array;
  consumerMap?: Float64Array;
  transport?: { plan: Float64Array; cost: Float64Array; iterations?: number; converged?: boolean; marginalError?: number };
}

export interface MethodContext {
  /** The OT settings (Intra-Fusion). */
  optimalTransport: OptimalTransport;
  /** A fresh seed per call (k-means seeding), drawn from prune()'s `random`. */
  seed(): number;
  progress(message: string): void;
}

export interface FusionMethod {
  /** prune()'s `fusion` value and the CLI's --fusion choice. */
  name: string;
  /** Key of the method's entry in the CLI's results JSON and checkpoint metadata. */
  key: string;
  /** Label in tables, plots and progress. */
  label: string;
  /** Progress verb: "pruned group 3 ...". */
  verb: string;
  /** SVG stroke-dasharray of its line in plots ('' solid). */
  dash: string;
  /**
   * Whether the map keeps original channels (rows at the kept indices), so dimensionality-preserving mode
   * and unfolded batch-norms make sense. Folded channels are cluster centroids with no original index.
   */
  keepsChannels: boolean;
  /** The maps of a batch of groups (one call per batch: Intra-Fusion solves all its OT problems at once). */
  maps(choices: GroupChoice[], ctx: MethodContext): Promise<GroupMap[]>;
}

/** The 0/1 selection map of the kept channels (k x n). */
export function selectionMap(n: number, keptIdx: number[]): Float64Array {
  const map = new Float64Array(keptIdx.length * n);
  keptIdx.forEach((i, j) => (map[j * n + i] = 1));
  return map;
}

export const FUSION_METHODS = [
  {
    name: 'none', key: 'default_pruning', label: 'default', verb: 'pruned', dash: '6 4', keepsChannels: true,
    maps: async (choices) => choices.map((c) => ({ map: selectionMap(c.n, c.keptIdx) })),
  },
  {
    name: 'ot', key: 'intra_fusion', label: 'Intra-Fusion', verb: 'fused', dash: '', keepsChannels: true,
    async maps(choices, ctx) {
      const problems: OtProblem[] = [];
      // Features stay on the GPU where they can: the cost matrix is computed there and only it comes back.
      for (const c of choices) {
        const axes = c.featureAxes();
        problems.push({ ...(axes ? { axes } : await c.features()), keptIdx: c.keptIdx, importance: c.importance });
      }
      const solved = await ctx.optimalTransport.maps(problems);
      return solved.map((m, i) => {
        if (m.converged === false) ctx.progress(`warning: Sinkhorn stopped at ${m.iterations} iterations for group ${choices[i].g} without reaching its marginal tolerance (error ${m.marginalError?.toExponential(2)})`);
        return { map: m.M, transport: { plan: m.plan, cost: m.cost, iterations: m.iterations, converged: m.converged, marginalError: m.marginalError } };
      });
    },
  },
  {
    name: 'folding', key: 'folding', label: 'folding', verb: 'folded', dash: '2 3', keepsChannels: false,
    async maps(choices, ctx) {
      const maps: GroupMap[] = [];
      for (const c of choices) {
        const { X, D } = await c.features();
        const f = foldingMaps(X, D, c.k, { seed: ctx.seed() });
        maps.push({ map: f.producer, consumerMap: f.consumer });
      }
      return maps;
    },
  },
] as const satisfies readonly FusionMethod[];

/** prune()'s `fusion`: 'none' (default pruning), 'ot' (Intra-Fusion) or 'folding'. */
export type Fusion = (typeof FUSION_METHODS)[number]['name'];

/** The method named `name`, or undefined. */
export function fusionMethod(name: string): FusionMethod | undefined {
  return FUSION_METHODS.find((m) => m.name === name);
}
