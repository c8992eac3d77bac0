/**
 * Intra-Fusion's transport step from raw features X, against a float64 reference written from the spec
 * (section 4): L2 row normalisation, L_p cost to the kept rows, marginals, the exact plan (checked against
 * a brute-force optimum), and the map M = T^T with source columns normalised. Sinkhorn against a float64
 * log-domain Sinkhorn, and its convergence report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../src/nn/init.js';
import { emd, OptimalTransport, OtError, sinkhornBatch } from '../src/prune/index.js';
import { destroyRuntime, fromArray } from '../src/tensor/tensor.js';
import { expectClose, gpu } from './helpers.js';
import { referenceCost, referenceMap, referenceSinkhorn } from './method-reference.js';

beforeAll(gpu);
afterAll(destroyRuntime);

/** Rows of very different scales, so a cost without the L2 row normalisation differs. */
function features(n: number, D: number, seed: number): Float64Array {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n * D }, (_, i) => (r() * 2 - 1) * (1 + 5 * Math.floor(i / D)));
}

/**
 * Brute-force optimum for uniform masses when k divides n: the transportation polytope's vertices are
 * then assignments of each source (mass 1/n) to one target taking n/k sources, so enumerate them all.
 */
function bruteForcePlan(cost: number[], n: number, k: number): { plan: number[]; value: number } {
  const cap = n / k;
  let best = { value: Infinity, assign: [] as number[] };
  const assign: number[] = [];
  const load = new Array(k).fill(0);
  const walk = (i: number, value: number) => {
    if (i === n) {
      if (value < best.value) best = { value, assign: [...assign] };
      return;
    }
    for (let j = 0; j < k; j++) {
      if (load[j] === cap) continue;
      load[j]++;
      assign[i] = j;
      walk(i + 1, value + cost[i * k + j] / n);
      load[j]--;
    }
  };
  walk(0, 0);
  const plan = new Array(n * k).fill(0);
  best.assign.forEach((j, i) => (plan[i * k + j] = 1 / n));
  return { plan, value: best.value };
}

const rowSums = (T: ArrayLike<number>, n: number, k: number) => Array.from({ length: n }, (_, i) => Array.from({ length: k }, (_, j) => T[i * k + j]).reduce((s, x) => s + x, 0));
const colSums = (T: ArrayLike<number>, n: number, k: number) => Array.from({ length: k }, (_, j) => Array.from({ length: n }, (_, i) => T[i * k + j]).reduce((s, x) => s + x, 0));

describe('the transport step from raw features', () => {
  const n = 8;
  const D = 5;
  const kept = [1, 4, 5, 7];
  const importance = [0.3, 1.4, 0.2, 0.9, 1.1, 1.6, 0.5, 2.0];

  it('cost: L2-normalised rows, L_p distance to the kept rows (p = 1, 2, 3)', () => {
    const X = features(n, D, 3);
    for (const p of [1, 2, 3]) {
      const ot = new OptimalTransport({ p });
      expectClose(ot.costMatrix(X, D, kept), referenceCost(X, D, kept, p), 1e-12, 1e-12, `cost p=${p}`);
    }
  });

  it('exact EMD: the brute-force optimal plan, and the map with source columns normalised (rows sum to n/k)', async () => {
    const X = features(n, D, 5);
    const ot = new OptimalTransport({ p: 1 });
    const [m] = await ot.maps([{ X, D, keptIdx: kept, importance }]);
    const cost = referenceCost(X, D, kept, 1);
    // The kept channels' rows are not computed (their mass stays in place): NaN but for their own 0.
    const k = kept.length;
    const expected = cost.map((c, e) => {
      const j = kept.indexOf(Math.floor(e / k));
      return j < 0 ? c : j === e % k ? 0 : NaN;
    });
    expect(Array.from(m.cost, Number.isNaN)).toEqual(expected.map(Number.isNaN));
    expectClose(m.cost.filter((c) => !Number.isNaN(c)), expected.filter((c) => !Number.isNaN(c)), 1e-12, 1e-12, 'cost rows computed');
    const best = bruteForcePlan(cost, n, k);
    expectClose(m.plan, best.plan, 1e-12, 0, 'plan');
    expectClose(m.M, referenceMap(best.plan, n, k), 1e-12, 0, 'map');
    for (let j = 0; j < k; j++) expect(Array.from({ length: n }, (_, i) => m.M[j * n + i]).reduce((s, x) => s + x)).toBeCloseTo(n / k, 12);
    const [full] = await new OptimalTransport({ p: 1, fullCost: true }).maps([{ X, D, keptIdx: kept, importance }]);
    expectClose(full.cost, cost, 1e-12, 1e-12, 'fullCost: every entry');
    expectClose(full.plan, best.plan, 1e-12, 0, 'fullCost: the same plan');
  });

  it('exact EMD solves only the residual problem (kept mass stays): an optimal plan of the full cost (the same plan where the optimum is unique), host and GPU, p = 1, 2, 3, any marginals', async () => {
    const value = (plan: Float64Array, C: ArrayLike<number>) => plan.reduce((v, x, e) => v + x * C[e], 0);
    let residualRows = 0;
    for (let s = 0; s < 24; s++) {
      const r = seededRandom(300 + s);
      const n = 6 + (s % 7);
      // A few features: L1 ties (a channel between two others in every coordinate) happen, and then any
      // optimal plan is right; 40 features: practically never, and the plan must be the full problem's.
      const Dh = s % 2 ? 40 : 3 + (s % 5);
      const k = s % 5 === 4 ? n : 1 + Math.floor(r() * (n - 1)); // every fifth: nothing pruned, masses may still move
      const keptIdx = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5).slice(0, k).sort((a, b) => a - b);
      // Skewed importance, so that under importance marginals some kept channels hold more than their sink takes.
      const imp = Array.from({ length: n }, () => 0.05 + r() ** 3 * 4);
      const p = [1, 2, 3][s % 3];
      const [sourceProbability, targetProbability] = ([['uniform', 'uniform'], ['importance', 'importance'], ['importance', 'uniform'], ['uniform', 'importance']] as const)[s % 4];
      const options = { p, sourceProbability, targetProbability };
      const X = features(n, Dh, 700 + s);
      const ot = new OptimalTransport(options);
      const { a, b } = ot.marginals(imp, keptIdx);
      residualRows += keptIdx.filter((i, j) => a[i] > b[j]).length;
      const what = `seed ${300 + s}, n ${n}, D ${Dh}, k ${k}, p ${p}, ${options.sourceProbability}/${options.targetProbability}`;
      const check = (plan: Float64Array, C: ArrayLike<number>, where: string) => {
        const full = emd(a, b, C).plan;
        expectClose(rowSums(plan, n, k), a, 1e-15, 0, `${where} source marginal, ${what}`);
        expectClose(colSums(plan, n, k), b, 1e-15, 0, `${where} target marginal, ${what}`);
        expect(value(plan, C), `${where} optimal value, ${what}`).toBeCloseTo(value(full, C), 14);
        if (Dh === 40) expectClose(plan, full, 1e-15, 0, `${where} plan, ${what}`);
      };
      const [host] = await ot.maps([{ X, D: Dh, keptIdx, importance: imp }]);
      check(host.plan, ot.costMatrix(X, Dh, keptIdx), 'host');
      // On the GPU the cost is float32: compared with the full float32 cost (same kernel, same sums).
      const t = fromArray(Float32Array.from(X), [n * Dh]);
      const axes = [{ tensor: t, rows: 1, inner: Dh }];
      const [device] = await ot.maps([{ axes, keptIdx, importance: imp }]);
      const [deviceFull] = await new OptimalTransport({ ...options, fullCost: true }).maps([{ axes, keptIdx, importance: imp }]);
      t.dispose();
      check(device.plan, deviceFull.cost, 'GPU');
    }
    expect(residualRows).toBeGreaterThan(0); // the cases include kept channels with mass left to move
  });

  it('exact EMD where little or nothing is left: k = n with equal importance (rounding remnants only) and pruned channels of tiny importance', async () => {
    const choices = [['uniform', 'uniform'], ['importance', 'importance'], ['importance', 'uniform'], ['uniform', 'importance']] as const;
    for (const n of [6, 7, 9, 12]) {
      const X = features(n, 40, 900 + n);
      const all = Array.from({ length: n }, (_, i) => i);
      for (const [sourceProbability, targetProbability] of choices) {
        const [m] = await new OptimalTransport({ sourceProbability, targetProbability }).maps([{ X, D: 40, keptIdx: all, importance: new Array(n).fill(0.1) }]);
        const identity = Array.from({ length: n * n }, (_, e) => (Math.floor(e / n) === e % n ? 1 : 0));
        expectClose(m.M, identity, 1e-12, 0, `k = n = ${n}, ${sourceProbability}/${targetProbability}: every channel stays`);
      }
    }
    // Pruned channels 1e-11, 1e-14 and 1e-17 as important as the kept ones (the last below float64's
    // rounding of the sinks' room): their mass is tiny but theirs, so each still joins the fusion (its
    // map column sums to 1), and the plan's marginals hold.
    const n = 64;
    const k = 32;
    const X = features(n, 40, 42);
    const keptIdx = Array.from({ length: k }, (_, j) => 2 * j);
    const ot = new OptimalTransport({ sourceProbability: 'importance', targetProbability: 'importance' });
    for (const tiny of [1e-11, 1e-14, 1e-17]) {
      const r = seededRandom(41);
      const imp = Array.from({ length: n }, (_, i) => (i % 2 ? tiny : 1) * (0.5 + r()));
      const [m] = await ot.maps([{ X, D: 40, keptIdx, importance: imp }]);
      const { a, b } = ot.marginals(imp, keptIdx);
      expectClose(rowSums(m.plan, n, k), a, 1e-15, 1e-9, `pruned importance x ${tiny}: source marginal`);
      expectClose(colSums(m.plan, n, k), b, 1e-15, 1e-9, `pruned importance x ${tiny}: target marginal`);
      for (let i = 1; i < n; i += 2) expect(Array.from({ length: k }, (_, j) => m.M[j * n + i]).reduce((t, v) => t + v), `x ${tiny}: pruned channel ${i}`).toBeCloseTo(1, 9);
    }
  });

  it('importance marginals: a = imp / sum(imp), b = imp[K] / sum(imp[K]), and the plan honours them', async () => {
    const X = features(n, D, 7);
    const ot = new OptimalTransport({ sourceProbability: 'importance', targetProbability: 'importance' });
    const total = importance.reduce((s, x) => s + x);
    const keptTotal = kept.reduce((s, i) => s + importance[i], 0);
    const a = importance.map((v) => v / total);
    const b = kept.map((i) => importance[i] / keptTotal);
    const mg = ot.marginals(importance, kept);
    expectClose(mg.a, a, 1e-15, 1e-12, 'a');
    expectClose(mg.b, b, 1e-15, 1e-12, 'b');
    const [m] = await ot.maps([{ X, D, keptIdx: kept, importance }]);
    expectClose(rowSums(m.plan, n, kept.length), a, 1e-12, 0, 'plan rows');
    expectClose(colSums(m.plan, n, kept.length), b, 1e-12, 0, 'plan columns');
    expectClose(m.M, referenceMap(m.plan, n, kept.length), 1e-12, 0, 'map');
    expect(() => ot.marginals(new Array(n).fill(0), kept)).toThrow(OtError);
  });

  it('Sinkhorn: equals a float64 log-domain Sinkhorn and reports convergence', async () => {
    const X = features(n, D, 9);
    const reg = 0.1;
    const ot = new OptimalTransport({ solver: 'sinkhorn', reg, sinkhorn: { tol: 1e-5, maxIter: 5000 } });
    const [m] = await ot.maps([{ X, D, keptIdx: kept, importance }]);
    const cost = referenceCost(X, D, kept, 1);
    const ref = referenceSinkhorn(new Array(n).fill(1 / n), new Array(kept.length).fill(1 / kept.length), cost, reg);
    expect(m.converged).toBe(true);
    expect(m.marginalError).toBeLessThan(1e-5);
    expectClose(m.plan, ref, 2e-5, 0, 'sinkhorn plan');
    expectClose(m.M, referenceMap(m.plan, n, kept.length), 1e-9, 1e-6, 'sinkhorn map');
  });

  it('Sinkhorn says when it stopped short of the tolerance, with the marginal error it reached', async () => {
    const X = features(n, D, 11);
    const cost = new OptimalTransport().costMatrix(X, D, kept);
    const a = new Array(n).fill(1 / n);
    const b = new Array(kept.length).fill(1 / kept.length);
    const [short] = await sinkhornBatch([{ a, b, cost, reg: 0.01 }], { maxIter: 2, tol: 1e-9 });
    expect(short.converged).toBe(false);
    expect(short.error).toBeGreaterThan(1e-9);
    // The reported error is the column-marginal violation of the returned plan.
    const err = Math.hypot(...colSums(short.plan, n, kept.length).map((s, j) => s - b[j]));
    expect(Math.abs(short.error - err)).toBeLessThan(1e-3 * err + 1e-6);
  });
});
