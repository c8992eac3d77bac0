/**
 * Exact optimal transport (the earth mover's distance) between histograms a (n) and b (k) with cost C
 * (n x k, row-major), as a minimum-cost flow solved by successive shortest paths, in float64 throughout.
 *
 * Residual graph: source i -> sink j always, sink j -> source i where flow x_ij > 0. Potentials pi keep
 * every residual arc's reduced cost c(u, v) + pi(u) - pi(v) >= 0, so Dijkstra applies and arcs that
 * carry flow have reduced cost 0 (the optimality conditions of the flow placed so far).
 *
 *   start   pi(sink j) = min_i C_ij; each sink takes what it can from its cheapest source (a zero
 *           reduced-cost arc). In Intra-Fusion every kept channel is its own sink's cheapest source
 *           (distance 0), so the kept channels' mass is placed before any search.
 *   rounds  one source with mass left runs Dijkstra until it settles a sink with room left; the flow is
 *           augmented along that path by as much as it allows, and the settled nodes' potentials move
 *           by their distance. Searching from one source (not from all of them at once) keeps each
 *           search small: it stops at the first sink with room, usually after a few nodes.
 *
 * Each round drains a source, fills a sink or empties a reverse arc, so there are about n + k rounds.
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

// The two hot loops of a search are functions of their own: called thousands of times, V8 optimises them
// early, where one long function would run unoptimised for most of a process's first solve.

/** The reached node with the smallest distance that is not settled yet, or -1. */
function closestUnsettled(touched: number[], settled: Uint8Array, dist: Float64Array): number {
  let u = -1;
  let du = Infinity;
  for (let t = 0; t < touched.length; t++) {
    const v = touched[t];
    if (!settled[v] && dist[v] < du) {
      du = dist[v];
      u = v;
    }
  }
  return u;
}

/** Relaxes the arcs from source u to every unsettled sink (`base`: u's distance plus its potential). */
function relaxRow(u: number, n: number, k: number, base: number, cost: Float64Array, pi: Float64Array, settled: Uint8Array, dist: Float64Array, pred: Int32Array, touched: number[]): void {
  const row = u * k;
  for (let j = 0; j < k; j++) {
    const v = n + j;
    if (settled[v]) continue;
    const d = base + cost[row + j] - pi[v];
    if (d < dist[v]) {
      if (dist[v] === Infinity) touched.push(v);
      dist[v] = d;
      pred[v] = u;
    }
  }
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
  const cost = Float64Array.from(C);
  const supply = Float64Array.from(a);
  // Scale b to a's total so tiny rounding differences cannot leave mass unplaced.
  const demand = Float64Array.from(b, (v) => (v * total) / totalB);
  const x = new Float64Array(n * k);
  const eps = 1e-15 * total;
  // Sources with flow into each sink (the reverse arcs), as small unordered lists.
  const into: number[][] = Array.from({ length: k }, () => []);
  const addFlow = (i: number, j: number, delta: number) => {
    const before = x[i * k + j];
    const after = before + delta;
    if (before <= eps && after > eps) into[j].push(i);
    else if (before > eps && after <= eps) into[j].splice(into[j].indexOf(i), 1);
    x[i * k + j] = after;
  };

  const pi = new Float64Array(V);
  for (let j = 0; j < k; j++) {
    let m = Infinity;
    let best = 0;
    for (let i = 0; i < n; i++) if (cost[i * k + j] < m) { m = cost[i * k + j]; best = i; }
    pi[n + j] = m; // every reduced cost C_ij - min_i C_ij >= 0, and 0 on the arc from `best`
    const delta = Math.min(supply[best], demand[j]);
    if (delta > eps) {
      addFlow(best, j, delta);
      supply[best] -= delta;
      demand[j] -= delta;
    }
  }
  let remaining = 0;
  for (let i = 0; i < n; i++) remaining += supply[i];

  const dist = new Float64Array(V).fill(Infinity);
  const pred = new Int32Array(V).fill(-1);
  const settled = new Uint8Array(V);
  const touched: number[] = []; // nodes whose dist was set this round (reset afterwards)
  const settledList: number[] = [];
  let s = 0; // next source to try (sources before it have no mass left)
  for (let round = 0; remaining > eps * V; round++) {
    if (round > 50 * V + 1000) throw new OtError('emd: no convergence (inconsistent input?).');
    while (s < n && supply[s] <= eps) s++;
    if (s === n) break;
    dist[s] = 0;
    touched.push(s);
    let target = -1;
    for (;;) {
      // The closest reached, unsettled node (the reached set is small).
      const u = closestUnsettled(touched, settled, dist);
      if (u < 0) break;
      const du = dist[u];
      settled[u] = 1;
      settledList.push(u);
      if (u >= n && demand[u - n] > eps) { target = u; break; }
      const base = du + pi[u];
      if (u < n) {
        relaxRow(u, n, k, base, cost, pi, settled, dist, pred, touched);
      } else {
        const j = u - n;
        const sources = into[j];
        for (let e = 0; e < sources.length; e++) {
          const i = sources[e];
          if (settled[i]) continue;
          const d = base - cost[i * k + j] - pi[i];
          if (d < dist[i]) {
            if (dist[i] === Infinity) touched.push(i);
            dist[i] = d;
            pred[i] = u;
          }
        }
      }
    }
    if (target < 0) throw new OtError('emd: no augmenting path although mass remains (inconsistent input?).');
    // Bottleneck along the path back to the source s.
    let delta = Math.min(demand[target - n], supply[s]);
    for (let v = target; pred[v] >= 0; v = pred[v]) {
      const u = pred[v];
      if (u >= n) delta = Math.min(delta, x[v * k + (u - n)]); // reverse arc sink u -> source v
    }
    supply[s] -= delta;
    demand[target - n] -= delta;
    remaining -= delta;
    for (let v = target; pred[v] >= 0; v = pred[v]) {
      const u = pred[v];
      if (u < n) addFlow(u, v - n, delta);
      else addFlow(v, u - n, -delta);
    }
    // Settled nodes move by their distance below the target's; the others keep theirs. Reduced costs
    // stay >= 0 (unsettled nodes are at least as far as the target) and become 0 along the path.
    const dt = dist[target];
    for (let t = 0; t < settledList.length; t++) pi[settledList[t]] += dist[settledList[t]] - dt;
    for (let t = 0; t < touched.length; t++) {
      const w = touched[t];
      dist[w] = Infinity;
      pred[w] = -1;
      settled[w] = 0;
    }
    touched.length = 0;
    settledList.length = 0;
  }
  let value = 0;
  for (let i = 0; i < n * k; i++) {
    if (x[i] < eps) x[i] = 0;
    value += x[i] * cost[i];
  }
  return { plan: x, cost: value };
}
