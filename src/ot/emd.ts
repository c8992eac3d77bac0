/**
 * Exact optimal transport (the earth mover's distance) between histograms a (n) and b (k) with cost C
 * (n x k, row-major), as a minimum-cost flow solved by successive shortest paths.
 *
 * Dijkstra runs on reduced costs c(u, v) + pi(u) - pi(v) >= 0 over the residual bipartite graph:
 * source i -> sink j always, sink j -> source i where flow x_ij > 0. Each round augments along one
 * shortest path from a source with mass left to a sink with room left, by as much as the path allows,
 * then updates the potentials. Each round drains a source or a sink or empties a reverse arc, so it
 * ends after about n + k rounds of O((n + k)^2 + n k) work, in float64 throughout.
 *
 * For costs in general position the optimal plan is unique, so the result equals any other exact
 * solver's (POT's network simplex included); with ties it returns one optimal plan.
 */

import { IntraFusionError } from '../errors.js';

/** An optimal-transport problem that is malformed (negative or unequal masses, non-finite costs). */
export class OtError extends IntraFusionError {
  override name = 'OtError';
}

export interface TransportPlan {
  /** n x k, row-major. */
  plan: Float64Array;
  /** <plan, C>. */
  cost: number;
}

function checkInputs(a: ArrayLike<number>, b: ArrayLike<number>, C: ArrayLike<number>): void {
  const n = a.length;
  const k = b.length;
  if (n === 0 || k === 0) throw new OtError('emd: both histograms need at least one bin.');
  if (C.length !== n * k) throw new OtError(`emd: the cost matrix has ${C.length} entries, expected ${n} x ${k}.`);
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    if (!(a[i] >= 0)) throw new OtError(`emd: source mass a[${i}] = ${a[i]} is not a non-negative number.`);
    sa += a[i];
  }
  for (let j = 0; j < k; j++) {
    if (!(b[j] >= 0)) throw new OtError(`emd: target mass b[${j}] = ${b[j]} is not a non-negative number.`);
    sb += b[j];
  }
  if (!(sa > 0)) throw new OtError('emd: the source histogram has no mass.');
  if (Math.abs(sa - sb) > 1e-6 * Math.max(sa, sb)) throw new OtError(`emd: the histograms have different masses (${sa} vs ${sb}).`);
  for (let i = 0; i < C.length; i++) if (!Number.isFinite(C[i])) throw new OtError(`emd: cost entry ${i} is not finite.`);
}

/** Exact optimal transport plan between histograms a and b under cost C (min-cost flow, float64). */
export function emd(a: ArrayLike<number>, b: ArrayLike<number>, C: ArrayLike<number>): TransportPlan {
  checkInputs(a, b, C);
  const n = a.length;
  const k = b.length;
  const V = n + k; // nodes: sources 0..n-1, sinks n..n+k-1
  let total = 0;
  for (let i = 0; i < n; i++) total += a[i];
  let totalB = 0;
  for (let j = 0; j < k; j++) totalB += b[j];
  const supply = Float64Array.from(a);
  // Scale b to a's total so tiny rounding differences cannot leave mass unplaced.
  const demand = Float64Array.from(b, (v) => (v * total) / totalB);
  const x = new Float64Array(n * k);
  const pi = new Float64Array(V);
  for (let j = 0; j < k; j++) {
    let m = Infinity;
    for (let i = 0; i < n; i++) m = Math.min(m, C[i * k + j]);
    pi[n + j] = m; // makes every reduced cost C_ij - min_i C_ij >= 0
  }
  const eps = 1e-15 * total;
  const dist = new Float64Array(V);
  const pred = new Int32Array(V);
  const done = new Uint8Array(V);
  let remaining = total;
  for (let round = 0; remaining > eps * V; round++) {
    if (round > 50 * V + 1000) throw new OtError('emd: no convergence (inconsistent input?).');
    dist.fill(Infinity);
    done.fill(0);
    pred.fill(-1);
    for (let i = 0; i < n; i++) if (supply[i] > eps) dist[i] = 0;
    let target = -1;
    for (;;) {
      // The closest unsettled node (dense Dijkstra: the graph is complete bipartite).
      let u = -1;
      let du = Infinity;
      for (let v = 0; v < V; v++) if (!done[v] && dist[v] < du) { du = dist[v]; u = v; }
      if (u < 0) break;
      done[u] = 1;
      if (u >= n && demand[u - n] > eps) { target = u; break; }
      if (u < n) {
        const row = u * k;
        const base = du + pi[u];
        for (let j = 0; j < k; j++) {
          const v = n + j;
          if (done[v]) continue;
          const d = base + C[row + j] - pi[v];
          if (d < dist[v]) { dist[v] = d; pred[v] = u; }
        }
      } else {
        const j = u - n;
        const base = du + pi[u];
        for (let i = 0; i < n; i++) {
          if (done[i] || x[i * k + j] <= eps) continue;
          const d = base - C[i * k + j] - pi[i];
          if (d < dist[i]) { dist[i] = d; pred[i] = u; }
        }
      }
    }
    if (target < 0) throw new OtError('emd: no augmenting path although mass remains (inconsistent input?).');
    // Bottleneck along the path back to a source.
    let delta = demand[target - n];
    let v = target;
    while (pred[v] >= 0) {
      const u = pred[v];
      if (u >= n) delta = Math.min(delta, x[v * k + (u - n)]); // reverse arc sink u -> source v
      v = u;
    }
    delta = Math.min(delta, supply[v]);
    supply[v] -= delta;
    demand[target - n] -= delta;
    remaining -= delta;
    v = target;
    while (pred[v] >= 0) {
      const u = pred[v];
      if (u < n) x[u * k + (v - n)] += delta;
      else x[v * k + (u - n)] -= delta;
      v = u;
    }
    // Potentials: settled nodes by their distance, the rest by the target's, keeping reduced costs >= 0.
    const dt = dist[target];
    for (let w = 0; w < V; w++) pi[w] += Math.min(dist[w], dt);
  }
  let cost = 0;
  for (let i = 0; i < n * k; i++) {
    if (x[i] < eps) x[i] = 0;
    cost += x[i] * C[i];
  }
  return { plan: x, cost };
}
