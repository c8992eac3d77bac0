/**
 * Intra-Fusion's optimal-transport map (spec section 4, the reference's optimal_transport.py):
 *   features X (n x D) -> rows normalised by their L2 norm -> cost C_ij = ||X_i - X_{K_j}||_p (n x k,
 *   K = kept channels in ascending order) -> marginals (uniform, or importance-proportional) -> plan T
 *   (exact EMD, or entropic Sinkhorn) -> M = T^T with each source column divided by its sum, so
 *   M[j, i] = T_ij / a_i. Fused neurons are weighted sums: each row of M sums to n/k for uniform masses.
 *
 * Exact EMD needs only part of the cost. Each kept channel K_j is both a source and the location of sink
 * j, at distance 0, and an L_p distance is a metric: if an optimal plan sent less than min(a_{K_j}, b_j)
 * from K_j to j, some mass K_j -> j' and i -> j could be rerouted as K_j -> j and i -> j', which costs
 * C(i, j') - C(K_j, j') - C(i, K_j) <= 0 (triangle inequality). So some optimal plan keeps that mass in
 * place, and the rest is an optimal plan of the residual problem, whose sources are only the channels
 * with mass left (the pruned ones, under uniform masses): the cost's rows for the kept channels are
 * never needed, which halves the work at sparsity 0.5. For costs in general position the optimum is
 * unique, so the plan is the one a solver of the full problem finds (POT's included).
 */
import { deviceFeatures, lpCost, type DeviceFeatures, type FeatureAxis } from '../kernels/prune.js';
import { emd, OtError } from './emd.js';
import { sinkhornBatch, type SinkhornOptions } from './sinkhorn.js';

export type Probability = 'uniform' | 'importance';
export type OtSolver = 'emd' | 'sinkhorn';

export interface OptimalTransportOptions {
  /** Order of the cost's L_p distance (reference: 1). */
  p?: number;
  targetProbability?: Probability;
  sourceProbability?: Probability;
  /** Only 'most_important' (the kept channels) is supported; the reference's experiments use it. */
  target?: 'most_important';
  solver?: OtSolver;
  /** Entropic regulariser for Sinkhorn (default 0.05). */
  reg?: number;
  /** Sinkhorn stopping rule (default: marginal error below 1e-6, at most 3000 iterations). */
  sinkhorn?: SinkhornOptions;
  /**
   * Compute every entry of the n x k cost even where exact EMD does not need it (the rows of kept
   * channels whose whole mass stays in place; see the file comment). Default false: those entries are
   * NaN in the returned cost (their diagonal entry, the distance 0 to itself, excepted). Same plan.
   */
  fullCost?: boolean;
}

/**
 * One group's transport problem. Features come either as X (n x D on the host; the cost is computed in
 * float64 JavaScript) or as `axes`, weight tensors on the GPU (the cost is computed there in float32, as
 * the reference's torch.cdist, and only the n x k cost matrix is read back).
 */
export interface OtProblem {
  X?: Float64Array;
  D?: number;
  axes?: FeatureAxis[];
  keptIdx: number[];
  importance: ArrayLike<number>;
}

export interface OtMap {
  /** k x n, row-major: fused neuron j = sum_i M[j, i] * neuron i. */
  M: Float64Array;
  plan: Float64Array;
  /**
   * n x k. With exact EMD and without `fullCost`, rows the solver did not need (sources whose whole mass
   * stays on their own kept channel) hold NaN but for their 0 on that channel.
   */
  cost: Float64Array;
  /** Sinkhorn only: iterations run, whether the marginal tolerance was met, and the marginal error reached. */
  iterations?: number;
  converged?: boolean;
  marginalError?: number;
}

/** Intra-Fusion's transport settings and the fusion map it computes per group (EMD or Sinkhorn). */
export class OptimalTransport {
  readonly p: number;
  readonly targetProbability: Probability;
  readonly sourceProbability: Probability;
  readonly target: 'most_important';
  readonly solver: OtSolver;
  readonly reg: number;
  readonly sinkhornOptions: SinkhornOptions;
  readonly fullCost: boolean;

  constructor(o: OptimalTransportOptions = {}) {
    this.p = o.p ?? 1;
    this.targetProbability = o.targetProbability ?? 'uniform';
    this.sourceProbability = o.sourceProbability ?? 'uniform';
    this.target = o.target ?? 'most_important';
    this.solver = o.solver ?? 'emd';
    this.reg = o.reg ?? 0.05;
    this.fullCost = o.fullCost ?? false;
    // Pruning problems have costs of L1 distances between long normalised rows, so cost/reg reaches the
    // thousands and float32 potentials stall near a 1e-6 marginal error: stop there (or after 3000 rounds).
    this.sinkhornOptions = { maxIter: 3000, tol: 1e-6, ...o.sinkhorn };
    if (!(this.p >= 1)) throw new OtError(`OptimalTransport: p must be >= 1, got ${this.p}.`);
    for (const [name, v] of [['targetProbability', this.targetProbability], ['sourceProbability', this.sourceProbability]] as const) {
      if (v !== 'uniform' && v !== 'importance') throw new OtError(`OptimalTransport: ${name} must be "uniform" or "importance", got "${v}".`);
    }
    if (this.target !== 'most_important') {
      throw new OtError(`OptimalTransport: target "${this.target}" is not supported; use "most_important" (the reference's cluster_centroid is unused in its experiments).`);
    }
    if (this.solver !== 'emd' && this.solver !== 'sinkhorn') throw new OtError(`OptimalTransport: solver must be "emd" or "sinkhorn", got "${this.solver}".`);
    if (!(this.reg > 0)) throw new OtError(`OptimalTransport: reg must be positive, got ${this.reg}.`);
  }

  /**
   * Pairwise L_p distances between L2-normalised source rows and the kept rows: n x k, or
   * sources.length x k for the rows `sources` (channel indices) only.
   */
  costMatrix(X: Float64Array, D: number, keptIdx: number[], sources?: readonly number[]): Float64Array {
    const n = X.length / D;
    const k = keptIdx.length;
    const Xn = new Float64Array(X.length);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += X[i * D + d] ** 2;
      const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
      for (let d = 0; d < D; d++) Xn[i * D + d] = X[i * D + d] * inv;
    }
    const rows = sources ?? Array.from({ length: n }, (_, i) => i);
    const C = new Float64Array(rows.length * k);
    const p = this.p;
    rows.forEach((i, r) => {
      for (let j = 0; j < k; j++) {
        const a = i * D;
        const b = keptIdx[j] * D;
        let s = 0;
        if (p === 1) for (let d = 0; d < D; d++) s += Math.abs(Xn[a + d] - Xn[b + d]);
        else for (let d = 0; d < D; d++) s += Math.abs(Xn[a + d] - Xn[b + d]) ** p;
        C[r * k + j] = p === 1 ? s : s ** (1 / p);
      }
    });
    return C;
  }

  /**
   * The cost matrix of features given as weight tensors on the GPU (see OtProblem), in float32 there:
   * n x k, or sources.length x k for the rows `sources` only.
   */
  async deviceCostMatrix(n: number, axes: FeatureAxis[], keptIdx: number[], sources?: readonly number[]): Promise<Float64Array> {
    let f: DeviceFeatures | null = null;
    try {
      // The sources take XT's first columns, where the cost kernel reads its rows.
      let order: number[] | undefined;
      if (sources) {
        const isSource = new Uint8Array(n);
        for (const i of sources) isSource[i] = 1;
        order = [...sources];
        for (let c = 0; c < n; c++) if (!isSource[c]) order.push(c);
      }
      f = deviceFeatures(n, axes, order);
      return Float64Array.from(await lpCost(f, keptIdx, this.p, sources?.length ?? n).dataAndDispose());
    } finally {
      f?.XT.dispose();
    }
  }

  private async problemCost(pr: OtProblem, sources?: readonly number[]): Promise<Float64Array> {
    if (pr.axes) return this.deviceCostMatrix(pr.importance.length, pr.axes, pr.keptIdx, sources);
    if (!pr.X || !pr.D) throw new OtError('OptimalTransport: a problem needs its features, as X and D or as GPU axes.');
    return this.costMatrix(pr.X, pr.D, pr.keptIdx, sources);
  }

  /**
   * Exact EMD from the cost rows it needs (file comment): each kept channel's mass stays on its own sink
   * as far as both allow, and only the sources with mass left are solved for, from their cost rows.
   */
  private async emdFromResidual(pr: OtProblem, a: Float64Array, b: Float64Array): Promise<{ plan: Float64Array; cost: Float64Array }> {
    const n = a.length;
    const k = b.length;
    const supply = Float64Array.from(a);
    const demand = Float64Array.from(b);
    const plan = new Float64Array(n * k);
    // What a kept channel has left is a difference of two masses; one within 1e-12 of the other is
    // rounding, not mass (k == n with importance sources and uniform sinks leaves 1e-17s). A sink's room
    // stays as it is: it is only ever filled, and its rounding is absorbed below.
    const remnant = (left: number, of: number) => (left <= 1e-12 * of ? 0 : left);
    pr.keptIdx.forEach((i, j) => {
      const stays = Math.min(supply[i], demand[j]);
      plan[i * k + j] = stays;
      supply[i] = remnant(supply[i] - stays, a[i]);
      demand[j] -= stays;
    });
    // A pruned channel's mass is its own, however small: it still joins the fusion (its map column sums to 1).
    const sources: number[] = [];
    for (let i = 0; i < n; i++) if (supply[i] > 0) sources.push(i);
    const cost = new Float64Array(n * k).fill(NaN);
    pr.keptIdx.forEach((i, j) => (cost[i * k + j] = 0));
    if (sources.length === 0) return { plan, cost }; // nothing moves (nothing pruned, or only rounding left)
    const left = sources.reduce((t, i) => t + supply[i], 0);
    const room = demand.reduce((t, v) => t + v, 0);
    const total = a.reduce((t, v) => t + v, 0);
    if (Math.abs(left - room) > 1e-9 * total) {
      throw new OtError(`OptimalTransport: ${left} of the source mass is left to move but the kept channels have room for ${room} (inconsistent marginals).`);
    }
    // The room is a sum of differences, exact only to rounding of the whole mass, which can be large
    // against a small residual (pruned channels of tiny importance): put it on the supply's scale, or
    // emd's check of equal masses (relative to the residual) would refuse a consistent problem. Room
    // below rounding altogether (pruned channels under 1e-16 of the mass) is spread as b is.
    const sinks = room > 0 ? demand : b;
    const scale = left / sinks.reduce((t, v) => t + v, 0);
    const rows = await this.problemCost(pr, sources);
    const residual = emd(Float64Array.from(sources, (i) => supply[i]), sinks.map((v) => v * scale), rows).plan;
    sources.forEach((i, r) => {
      cost.set(rows.subarray(r * k, (r + 1) * k), i * k);
      for (let j = 0; j < k; j++) plan[i * k + j] += residual[r * k + j];
    });
    return { plan, cost };
  }

  marginals(importance: ArrayLike<number>, keptIdx: number[]): { a: Float64Array; b: Float64Array } {
    const n = importance.length;
    const k = keptIdx.length;
    const norm = (v: Float64Array) => {
      const s = v.reduce((x, y) => x + y, 0);
      if (!(s > 0)) throw new OtError('OptimalTransport: importance-based marginals need positive total importance.');
      return v.map((x) => x / s);
    };
    const a = this.sourceProbability === 'uniform' ? new Float64Array(n).fill(1 / n) : norm(Float64Array.from(importance, (v) => Math.max(v, 0)));
    const b = this.targetProbability === 'uniform' ? new Float64Array(k).fill(1 / k) : norm(Float64Array.from(keptIdx, (i) => Math.max(importance[i], 0)));
    return { a, b };
  }

  /**
   * Fusion maps for several problems; with Sinkhorn they are solved in one GPU batch. A Sinkhorn plan
   * that missed the tolerance within maxIter is still returned, with converged: false and its marginal error.
   */
  async maps(problems: OtProblem[]): Promise<OtMap[]> {
    const prepared = [];
    let plans: { plan: Float64Array; iterations?: number; converged?: boolean; error?: number }[];
    if (this.solver === 'emd' && !this.fullCost) {
      plans = [];
      for (const pr of problems) {
        const { a, b } = this.marginals(pr.importance, pr.keptIdx);
        const { plan, cost } = await this.emdFromResidual(pr, a, b);
        plans.push({ plan });
        prepared.push({ cost, n: a.length, k: b.length });
      }
    } else {
      for (const pr of problems) prepared.push({ ...this.marginals(pr.importance, pr.keptIdx), cost: await this.problemCost(pr), n: pr.importance.length, k: pr.keptIdx.length });
      if (this.solver === 'emd') plans = prepared.map((q) => emd(q.a, q.b, q.cost));
      else plans = await sinkhornBatch(prepared.map((q) => ({ a: q.a, b: q.b, cost: q.cost, reg: this.reg })), this.sinkhornOptions);
    }
    return prepared.map((q, idx) => {
      const { plan } = plans[idx];
      const M = new Float64Array(q.k * q.n);
      for (let i = 0; i < q.n; i++) {
        let col = 0;
        for (let j = 0; j < q.k; j++) col += plan[i * q.k + j];
        for (let j = 0; j < q.k; j++) M[j * q.n + i] = col > 0 ? plan[i * q.k + j] / col : 0;
      }
      const { iterations, converged, error } = plans[idx];
      return { M, plan, cost: q.cost, iterations, converged, marginalError: error };
    });
  }
}
