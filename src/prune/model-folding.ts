/**
 * Model folding (Wang, Šikić, Thiele, Saukh, ICLR 2025, "Forget the Data and Fine-Tuning! Just Fold the
 * Network to Compress"): a data-free baseline that merges a group's n channels into k by k-means
 * clustering instead of pruning them.
 *
 * The rule, as in the authors' code (marza96/ModelFolding `utils/weight_clustering.py`, and
 * nanguoyu/model-folding-universal `core/weight_clustering_utils.py`):
 * - Features: row c concatenates every weight slice of channel c along the group's channel axis (producer
 *   rows and consumer columns), as `groupFeatures` builds X.
 * - Clustering: on the raw weights. Their code runs PCA with n components first, which only centres and
 *   rotates (Euclidean distances unchanged), and standardises columns with a RobustScaler only in the
 *   "approximate repair" variant; rows are L2-normalised only for the inertia they log. So, unlike
 *   Intra-Fusion's OT cost, X is NOT row-normalised here: a cluster mean is then exactly the k-means
 *   centroid, and folding replaces each channel's weights by its centroid (least-squares W ≈ M·C).
 *   A caller wanting Intra-Fusion-style directions can L2-normalise X's rows before calling.
 *   Their clusterer is Hartigan k-means (package `hkmeans`) or Ward agglomerative; here it is Lloyd's
 *   algorithm with k-means++ seeding and restarts, the textbook k-means.
 * - Merge, with M the k x n 0/1 cluster-membership matrix: producers W' = diag(1/|S_j|)·M·W, the cluster
 *   mean (biases too); consumers W'[:, j] = Σ_{i∈S_j} W[:, i], the cluster sum, so the next layer sees the
 *   same total input when the members' activations are alike. The BatchNorm "repair" steps of the paper
 *   (REPAIR / approximate repair of the variance) are not part of these maps.
 *
 * Lloyd runs on the Gram matrix of the centred features (kernel k-means with a linear kernel): a distance
 * to a cluster mean needs only inner products, so one iteration costs O(n²) instead of O(n·k·D), and the
 * O(n²·D) Gram matrix is paid once. For a VGG group (n = 512, D = 9216) that is the difference between
 * about a second per iteration and a millisecond.
 */

import { ArgumentError } from '../errors.js';
import { seededRandom } from '../nn/init.js';

export interface FoldingOptions {
  /** Seed of the k-means++ draws (default 0). */
  seed?: number;
  /** Most Lloyd iterations per restart (default 100); a restart stops earlier once assignments are stable. */
  iterations?: number;
  /** Independent k-means++ starts; the lowest inertia wins, the first on ties (default 3). */
  restarts?: number;
}

export interface FoldingMaps {
  /** k x n row-major: 1/|S_j| at the members of cluster j (rows sum to 1). Producers: W' = producer·W. */
  producer: Float64Array;
  /** k x n row-major: 1 at the members of cluster j (one 1 per column). Consumers: W'[:, j] = Σ_i consumer[j, i]·W[:, i]. */
  consumer: Float64Array;
  /** Cluster of each channel, 0..k-1, numbered by each cluster's smallest member. */
  assignment: Int32Array;
  /** Σ_c ‖X_c − mean of its cluster‖², the squared error of replacing every row by its cluster mean. */
  inertia: number;
}

/** Model folding of one group: k-means of its channel features into producer (mean) and consumer (sum) maps. */
export function foldingMaps(X: Float64Array, D: number, k: number, o: FoldingOptions = {}): FoldingMaps {
  const { seed = 0, iterations = 100, restarts = 3 } = o;
  if (!Number.isInteger(D) || D < 1) throw new ArgumentError(`foldingMaps: feature width D = ${D} must be a positive integer.`);
  if (X.length === 0 || X.length % D !== 0) throw new ArgumentError(`foldingMaps: X has ${X.length} values, not a positive multiple of D = ${D}.`);
  const n = X.length / D;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new ArgumentError(`foldingMaps: k = ${k} clusters must be an integer in 1..${n} (the channel count).`);
  if (!Number.isInteger(iterations) || iterations < 1) throw new ArgumentError(`foldingMaps: iterations = ${iterations} must be a positive integer.`);
  if (!Number.isInteger(restarts) || restarts < 1) throw new ArgumentError(`foldingMaps: restarts = ${restarts} must be a positive integer.`);
  for (let i = 0; i < X.length; i++) {
    if (!Number.isFinite(X[i])) throw new ArgumentError(`foldingMaps: X[${i}] = ${X[i]} (channel ${Math.floor(i / D)}) is not finite.`);
  }

  const G = centredGram(X, n, D);
  const random = seededRandom(seed);
  let best: { assignment: Int32Array; inertia: number } | null = null;
  for (let r = 0; r < restarts; r++) {
    const run = lloyd(G, n, k, kMeansPlusPlus(G, n, k, random), iterations);
    if (best === null || run.inertia < best.inertia) best = run;
  }
  const assignment = numberBySmallestMember(best!.assignment, k);

  const producer = new Float64Array(k * n);
  const consumer = new Float64Array(k * n);
  const size = new Int32Array(k);
  for (const j of assignment) size[j]++;
  assignment.forEach((j, i) => {
    producer[j * n + i] = 1 / size[j];
    consumer[j * n + i] = 1;
  });
  return { producer, consumer, assignment, inertia: best!.inertia };
}

/** G = Xc·Xcᵀ with Xc = X minus its column means. Centring leaves distances alone and keeps the
 *  ‖x‖² − 2x·c + ‖c‖² expansion from cancelling when all rows share a large offset. */
function centredGram(X: Float64Array, n: number, D: number): Float64Array {
  const mean = new Float64Array(D);
  for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) mean[d] += X[i * D + d] / n;
  const Xc = new Float64Array(n * D);
  for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) Xc[i * D + d] = X[i * D + d] - mean[d];
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += Xc[i * D + d] * Xc[j * D + d];
      G[i * n + j] = G[j * n + i] = s;
    }
  }
  return G;
}

/** k-means++ (Arthur & Vassilvitskii 2007): the first centre uniformly, each next one with probability
 *  proportional to the squared distance to the nearest centre so far. Returns the initial assignment. */
function kMeansPlusPlus(G: Float64Array, n: number, k: number, random: () => number): Int32Array {
  const pointDistance = (i: number, c: number) => Math.max(0, G[i * n + i] + G[c * n + c] - 2 * G[i * n + c]);
  const centres = [Math.floor(random() * n)];
  const nearest = new Float64Array(n).map((_, i) => pointDistance(i, centres[0]));
  const assignment = new Int32Array(n);
  while (centres.length < k) {
    const total = nearest.reduce((a, b) => a + b, 0);
    let next = -1;
    if (total > 0) {
      let r = random() * total;
      for (let i = 0; i < n && next < 0; i++) if (nearest[i] > 0 && (r -= nearest[i]) < 0) next = i;
      for (let i = n - 1; next < 0; i--) if (nearest[i] > 0) next = i; // r ran past the end by rounding
    } else {
      // Fewer distinct rows than clusters: any point not yet a centre (the empty clusters are re-seeded).
      const free = [...Array(n).keys()].filter((i) => !centres.includes(i));
      next = free[Math.floor(random() * free.length)];
    }
    const j = centres.length;
    centres.push(next);
    for (let i = 0; i < n; i++) {
      const d = pointDistance(i, next);
      if (d < nearest[i]) {
        nearest[i] = d;
        assignment[i] = j;
      }
    }
  }
  return assignment;
}

/** Per-cluster sums over the Gram matrix: enough to get any point's squared distance to any cluster mean,
 *  ‖x_i − μ_j‖² = G_ii − 2·Σ_{m∈S_j} G_im / |S_j| + Σ_{m,l∈S_j} G_ml / |S_j|². */
function clusterDistances(G: Float64Array, n: number, k: number, assignment: Int32Array) {
  const size = new Int32Array(k);
  const cross = new Float64Array(n * k); // cross[i, j] = Σ_{m∈S_j} G_im
  for (let m = 0; m < n; m++) size[assignment[m]]++;
  for (let i = 0; i < n; i++) for (let m = 0; m < n; m++) cross[i * k + assignment[m]] += G[i * n + m];
  const within = new Float64Array(k); // Σ_{m,l∈S_j} G_ml
  for (let m = 0; m < n; m++) within[assignment[m]] += cross[m * k + assignment[m]];
  const distance = (i: number, j: number) =>
    Math.max(0, G[i * n + i] - (2 * cross[i * k + j]) / size[j] + within[j] / (size[j] * size[j]));
  return { size, distance };
}

/** An empty cluster takes the point farthest from its own cluster mean (from a cluster with two or more
 *  members, so none empties in turn), one empty cluster at a time. */
function fillEmptyClusters(G: Float64Array, n: number, k: number, assignment: Int32Array): void {
  for (;;) {
    const { size, distance } = clusterDistances(G, n, k, assignment);
    const empty = size.indexOf(0);
    if (empty < 0) return;
    let farthest = -1;
    let far = -1;
    for (let i = 0; i < n; i++) {
      const d = distance(i, assignment[i]);
      if (size[assignment[i]] > 1 && d > far) [farthest, far] = [i, d];
    }
    assignment[farthest] = empty;
  }
}

/** Lloyd's iterations from an initial assignment until it stops changing; returns it and its inertia. */
function lloyd(G: Float64Array, n: number, k: number, assignment: Int32Array, iterations: number) {
  for (let it = 0; it < iterations; it++) {
    fillEmptyClusters(G, n, k, assignment);
    const { distance } = clusterDistances(G, n, k, assignment);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let bestD = Infinity;
      for (let j = 0; j < k; j++) {
        const d = distance(i, j);
        if (d < bestD) [bestD, next[i]] = [d, j];
      }
    }
    const stable = next.every((j, i) => j === assignment[i]);
    assignment = next;
    if (stable) break;
  }
  fillEmptyClusters(G, n, k, assignment);
  const { distance } = clusterDistances(G, n, k, assignment);
  let inertia = 0;
  for (let i = 0; i < n; i++) inertia += distance(i, assignment[i]);
  return { assignment, inertia };
}

/** Renumber clusters in the order of their smallest member, so equal partitions give equal maps. */
function numberBySmallestMember(assignment: Int32Array, k: number): Int32Array {
  const renamed = new Int32Array(k).fill(-1);
  let next = 0;
  return assignment.map((j) => (renamed[j] < 0 ? (renamed[j] = next++) : renamed[j]));
}
