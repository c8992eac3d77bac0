/** Model folding maps (src/prune/folding.ts) against a brute-force float64 k-means reference. Pure CPU. */

import { describe, expect, it } from 'vitest';
import { foldingMaps } from '../src/prune/model-folding.js';
import { ArgumentError } from '../src/errors.js';
import { rng } from './reference.js';

/** Every partition of 0..n-1 into exactly k non-empty clusters, as restricted growth strings
 *  (clusters numbered by their smallest member, the order foldingMaps promises). */
function forEachPartition(n: number, k: number, visit: (a: Int32Array) => void): void {
  const a = new Int32Array(n);
  const extend = (i: number, used: number): void => {
    if (n - i < k - used) return;
    if (i === n) return visit(a);
    for (let j = 0; j <= Math.min(used, k - 1); j++) {
      a[i] = j;
      extend(i + 1, j === used ? used + 1 : used);
    }
  };
  extend(0, 0);
}

/** Σ_i ‖x_i − mean of its cluster‖², straight from the definition. */
function refInertia(X: Float64Array, D: number, a: Int32Array, k: number): number {
  const sum = new Float64Array(k * D);
  const size = new Float64Array(k);
  a.forEach((j, i) => {
    size[j]++;
    for (let d = 0; d < D; d++) sum[j * D + d] += X[i * D + d];
  });
  let s = 0;
  a.forEach((j, i) => {
    for (let d = 0; d < D; d++) s += (X[i * D + d] - sum[j * D + d] / size[j]) ** 2;
  });
  return s;
}

/** The best partition by brute force (n <= 7: at most 877 partitions). */
function optimum(X: Float64Array, D: number, k: number): { inertia: number; assignment: Int32Array } {
  let best = { inertia: Infinity, assignment: new Int32Array(0) };
  forEachPartition(X.length / D, k, (a) => {
    const inertia = refInertia(X, D, a, k);
    if (inertia < best.inertia) best = { inertia, assignment: a.slice() };
  });
  return best;
}

const uniform = (r: () => number, count: number, scale = 1) => new Float64Array(count).map(() => (r() * 2 - 1) * scale);

/** n points around k far-apart centres (every cluster used), members in shuffled order. */
function separated(r: () => number, n: number, k: number, D: number): { X: Float64Array; planted: Int32Array } {
  const centres = uniform(r, k * D, 100);
  for (let j = 0; j < k; j++) centres[j * D] = 1000 * j; // at least 1000 apart along the first axis
  const labels = Int32Array.from({ length: n }, (_, i) => (i < k ? i : Math.floor(r() * k)));
  for (let i = n - 1; i > 0; i--) {
    const s = Math.floor(r() * (i + 1));
    [labels[i], labels[s]] = [labels[s], labels[i]];
  }
  const X = new Float64Array(n * D);
  labels.forEach((j, i) => {
    for (let d = 0; d < D; d++) X[i * D + d] = centres[j * D + d] + (r() * 2 - 1) * 0.1;
  });
  return { X, planted: labels };
}

/** Same partition, whatever the numbering. */
function samePartition(a: Int32Array, b: Int32Array): boolean {
  return a.every((_, i) => a.every((__, m) => (a[i] === a[m]) === (b[i] === b[m])));
}

describe('foldingMaps', () => {
  it('finds the optimal partition of well-separated data (brute force over all partitions, n <= 7)', () => {
    const r = rng(11);
    for (let c = 0; c < 60; c++) {
      const n = 2 + Math.floor(r() * 6);
      const k = 1 + Math.floor(r() * n);
      const D = 1 + Math.floor(r() * 4);
      const { X, planted } = separated(r, n, k, D);
      const best = optimum(X, D, k);
      const got = foldingMaps(X, D, k, { seed: c });
      expect(samePartition(best.assignment, planted)).toBe(true); // the reference agrees with the planted clusters
      expect(Array.from(got.assignment)).toEqual(Array.from(best.assignment));
      expect(got.inertia).toBeCloseTo(best.inertia, 9);
    }
  });

  it('stays near the optimum on unstructured data, and reports the inertia of its own partition', () => {
    // Measured on these 500 cases: 480 (96%) reach the optimum, the worst is 2.27 x optimal (k-means++, 3
    // restarts). Lloyd only finds local optima, so this is a bound, not equality.
    const r = rng(5);
    let optimal = 0;
    const cases = 500;
    for (let c = 0; c < cases; c++) {
      const n = 2 + Math.floor(r() * 6);
      const k = 1 + Math.floor(r() * n);
      const D = 1 + Math.floor(r() * 4);
      const X = uniform(r, n * D);
      const best = optimum(X, D, k).inertia;
      const got = foldingMaps(X, D, k, { seed: c });
      const own = refInertia(X, D, got.assignment, k);
      expect(Math.abs(got.inertia - own)).toBeLessThan(1e-12 * (1 + own));
      expect(got.inertia).toBeGreaterThanOrEqual(best - 1e-12);
      expect(got.inertia).toBeLessThanOrEqual(3 * best + 1e-12);
      if (got.inertia <= best * (1 + 1e-9) + 1e-12) optimal++;
    }
    expect(optimal / cases).toBeGreaterThan(0.9);
  });

  it('iterates Lloyd to a fixed point: every channel is nearest to its own cluster mean', () => {
    const r = rng(17);
    const [n, D, k] = [80, 3, 9];
    const X = uniform(r, n * D);
    const isFixedPoint = (a: Int32Array) => {
      const mean = new Float64Array(k * D);
      const size = new Float64Array(k);
      a.forEach((j, i) => {
        size[j]++;
        for (let d = 0; d < D; d++) mean[j * D + d] += X[i * D + d];
      });
      for (let e = 0; e < k * D; e++) mean[e] /= size[Math.floor(e / D)];
      const dist = (i: number, j: number) => Array.from({ length: D }, (_, d) => (X[i * D + d] - mean[j * D + d]) ** 2).reduce((s, v) => s + v);
      return a.every((own, i) => Array.from({ length: k }, (_, j) => dist(i, j)).every((d) => dist(i, own) <= d + 1e-12));
    };
    for (let seed = 0; seed < 5; seed++) expect(isFixedPoint(foldingMaps(X, D, k, { seed }).assignment)).toBe(true);
    // The iteration cap is honoured: one Lloyd step from k-means++ is not yet converged for some seed.
    const capped = Array.from({ length: 5 }, (_, seed) => isFixedPoint(foldingMaps(X, D, k, { seed, iterations: 1, restarts: 1 }).assignment));
    expect(capped).toContain(false);
  });

  it('builds maps from the assignment: producer rows are cluster means, consumer columns one 1 per source', () => {
    const r = rng(3);
    for (const [n, k] of [[9, 4], [16, 5], [7, 1], [12, 11]]) {
      const D = 5;
      const { producer, consumer, assignment } = foldingMaps(uniform(r, n * D), D, k, { seed: n });
      const size = new Int32Array(k);
      for (const j of assignment) size[j]++;
      for (let j = 0; j < k; j++) {
        expect(size[j]).toBeGreaterThan(0);
        let rowSum = 0;
        for (let i = 0; i < n; i++) {
          rowSum += producer[j * n + i];
          expect(producer[j * n + i]).toBe(assignment[i] === j ? 1 / size[j] : 0);
        }
        expect(rowSum).toBeCloseTo(1, 12);
      }
      for (let i = 0; i < n; i++) {
        const column = Array.from({ length: k }, (_, j) => consumer[j * n + i]);
        expect(column.filter((v) => v === 1).length).toBe(1);
        expect(column.filter((v) => v !== 0 && v !== 1).length).toBe(0);
        expect(column[assignment[i]]).toBe(1);
      }
      // Clusters are numbered by their smallest member.
      const first = Array.from({ length: k }, (_, j) => assignment.indexOf(j));
      expect(first).toEqual([...first].sort((a, b) => a - b));
      expect(first[0]).toBe(0);
    }
  });

  it('folds a two-layer net whose cluster members are identical without changing its output', () => {
    // y = W2·relu(W1·x + b1) + b2 with hidden channels i ~ prototype p(i): the producer map averages equal
    // rows (W1, b1), the consumer map sums the W2 columns that read equal activations, so y is unchanged.
    const r = rng(8);
    const [din, n, k, dout] = [6, 10, 4, 3];
    const proto = uniform(r, k * (din + 1), 5);
    const protoOf = [2, 0, 1, 0, 3, 2, 2, 1, 0, 3]; // shuffled, every prototype used
    const W1 = new Float64Array(n * din);
    const b1 = new Float64Array(n);
    protoOf.forEach((p, i) => {
      for (let d = 0; d < din; d++) W1[i * din + d] = proto[p * (din + 1) + d];
      b1[i] = proto[p * (din + 1) + din];
    });
    const W2 = uniform(r, dout * n, 0.01); // small, so clustering sees the producer rows; distinct per column
    const b2 = uniform(r, dout);
    // Features as groupFeatures lays them out: producer row, then consumer column.
    const D = din + 1 + dout;
    const X = new Float64Array(n * D);
    for (let i = 0; i < n; i++) {
      for (let d = 0; d < din; d++) X[i * D + d] = W1[i * din + d];
      X[i * D + din] = b1[i];
      for (let o = 0; o < dout; o++) X[i * D + din + 1 + o] = W2[o * n + i];
    }
    const { producer: P, consumer: C, assignment } = foldingMaps(X, D, k, { seed: 1 });
    expect(samePartition(assignment, Int32Array.from(protoOf))).toBe(true);

    const W1f = new Float64Array(k * din);
    const b1f = new Float64Array(k);
    const W2f = new Float64Array(dout * k);
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < n; i++) {
        for (let d = 0; d < din; d++) W1f[j * din + d] += P[j * n + i] * W1[i * din + d];
        b1f[j] += P[j * n + i] * b1[i];
        for (let o = 0; o < dout; o++) W2f[o * k + j] += C[j * n + i] * W2[o * n + i];
      }
    }
    const forward = (W1: Float64Array, b1: Float64Array, W2: Float64Array, width: number, x: Float64Array) => {
      const h = new Float64Array(width).map((_, i) => Math.max(0, b1[i] + x.reduce((s, v, d) => s + W1[i * din + d] * v, 0)));
      return new Float64Array(dout).map((_, o) => b2[o] + h.reduce((s, v, i) => s + W2[o * width + i] * v, 0));
    };
    for (let t = 0; t < 20; t++) {
      const x = uniform(r, din, 2);
      const dense = forward(W1, b1, W2, n, x);
      const folded = forward(W1f, b1f, W2f, k, x);
      dense.forEach((v, o) => expect(folded[o]).toBeCloseTo(v, 10));
    }
  });

  it('is deterministic for a seed, and the seed matters', () => {
    const r = rng(21);
    const X = uniform(r, 40 * 6);
    const a = foldingMaps(X, 6, 9, { seed: 4 });
    const b = foldingMaps(X, 6, 9, { seed: 4 });
    expect(Array.from(b.assignment)).toEqual(Array.from(a.assignment));
    expect(Array.from(b.producer)).toEqual(Array.from(a.producer));
    expect(Array.from(b.consumer)).toEqual(Array.from(a.consumer));
    expect(b.inertia).toBe(a.inertia);
    // One restart on unstructured data lands in different local optima for different seeds.
    const seen = new Set<string>();
    for (let seed = 0; seed < 8; seed++) seen.add(foldingMaps(X, 6, 9, { seed, restarts: 1 }).assignment.join());
    expect(seen.size).toBeGreaterThan(1);
  });

  it('gives the identity map for k = n, also with duplicate channels', () => {
    const r = rng(2);
    const distinct = uniform(r, 8 * 3);
    const duplicates = new Float64Array(8 * 3).map((_, i) => [1, 2, 3][Math.floor(i / 3) % 2]); // two distinct rows
    for (const X of [distinct, duplicates]) {
      const { producer, consumer, assignment, inertia } = foldingMaps(X, 3, 8, { seed: 9 });
      expect(Array.from(assignment)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      const identity = Array.from({ length: 64 }, (_, e) => (Math.floor(e / 8) === e % 8 ? 1 : 0));
      expect(Array.from(producer)).toEqual(identity);
      expect(Array.from(consumer)).toEqual(identity);
      expect(inertia).toBe(0);
    }
  });

  it('keeps every cluster non-empty when there are fewer distinct channels than clusters', () => {
    // 7 channels, 2 distinct rows, k = 5: k-means++ runs out of positive-distance draws and Lloyd empties
    // clusters; each must be re-seeded, and the two distinct rows must never share a cluster.
    const X = Float64Array.from([0, 0, 5, 5, 0, 0, 0, 0, 5, 5, 5, 5, 0, 0]);
    for (let seed = 0; seed < 10; seed++) {
      const { assignment, inertia } = foldingMaps(X, 2, 5, { seed });
      const size = new Int32Array(5);
      for (const j of assignment) size[j]++;
      expect(Array.from(size).every((s) => s > 0)).toBe(true);
      expect(inertia).toBe(0);
    }
  });

  it('rejects bad arguments with ArgumentError', () => {
    const X = new Float64Array(12).map((_, i) => i);
    const bad: [Float64Array, number, number, object?][] = [
      [X, 3, 0], // k < 1
      [X, 3, 5], // k > n = 4
      [X, 3, 2.5], // k not an integer
      [X, 5, 2], // 12 values are not rows of 5
      [X, 0, 1], // D < 1
      [new Float64Array(0), 3, 1], // no channels
      [Float64Array.from([1, NaN, 3, 4]), 2, 1],
      [Float64Array.from([1, Infinity, 3, 4]), 2, 1],
      [X, 3, 2, { iterations: 0 }],
      [X, 3, 2, { restarts: 0 }],
    ];
    for (const [x, D, k, o] of bad) expect(() => foldingMaps(x, D, k, o), `D=${D} k=${k} ${JSON.stringify(o)}`).toThrow(ArgumentError);
    expect(() => foldingMaps(X, 3, 4)).not.toThrow();
  });
});
