/**
 * Pruning benchmark, VGG11-BN at sparsity 0.5, L1:
 *   - whole network (every group in turn, as the reference's MetaPruner.step does), default pruning and
 *     Intra-Fusion with exact EMD, beside the authors' code on the same job (bench/reference_prune.py, run
 *     with /usr/bin/python3 when torch and POT import and a reference checkout is given), repetitions
 *     interleaved ours / theirs so a change of load hits both; medians, and our first (cold) run apart;
 *   - time to prune each group alone with default pruning, IF-EMD and IF-Sinkhorn;
 *   - all groups' Sinkhorn problems solved in one batch;
 *   - EMD vs Sinkhorn accuracy on the shared checkpoint (when a checkpoint and data are given).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSafetensorsBytes } from '../src/nn/checkpoint.js';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { parseNormalization } from '../src/data/cifar10.js';
import { evaluate } from '../src/nn/metrics.js';
import { Conv2d } from '../src/nn/layers.js';
import { createModel } from '../src/nn/models.js';
import { dependencyGroups, groupFeatures, groupImportance, OptimalTransport, prune } from '../src/prune/index.js';
import { splitByImportance } from '../src/prune/criteria.js';
import { keptCount } from '../src/prune/prune.js';
import { median, round } from './results.js';

export interface PruneTimingRow { group: number; channels: number; defaultS: number; emdS: number; sinkhornS: number }
export interface PruneAccuracyRow { group: number; sparsity: number; method: string; accuracy: number; pruneS: number }

/** Whole-network pruning of one method: our seconds (first run apart) and the reference's, interleaved. */
export interface WholeNetworkRow {
  method: 'default' | 'IF-EMD';
  oursFirstSeconds: number;
  oursSeconds: number[];
  referenceSeconds: number[] | null;
  oursMedian: number;
  referenceMedian: number | null;
  /** reference median / our median: how many times faster we are. */
  speedup: number | null;
  /** Process CPU seconds (all threads, lavapipe's included) per repetition: less sensitive to machine load than wall time. */
  oursCpuSeconds: number[];
  referenceCpuSeconds: number[] | null;
}
export interface WholeNetwork {
  rows: WholeNetworkRow[];
  /** Conv widths after whole-network IF: ours and the reference's (they must agree for a fair race). */
  oursWidths: number[];
  referenceWidths: number[] | null;
  reference: { torch: string; pot: string; threads: number; dir: string } | null;
  /** Why the reference column is empty, when it is. */
  referenceMissing: string | null;
}

/** A Python that imports torch and POT, or why none does. */
function referencePython(referenceDir: string | undefined): { python: string } | { missing: string } {
  if (!referenceDir) return { missing: 'no reference checkout given (--reference-dir=DIR or $INTRA_FUSION_REFERENCE: github.com/alexandertheus/Intra-Fusion)' };
  if (!existsSync(join(referenceDir, 'prune.py'))) return { missing: `${referenceDir} has no prune.py (not a checkout of github.com/alexandertheus/Intra-Fusion)` };
  for (const python of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(python, ['-c', 'import torch, ot'], { stdio: 'ignore' }).status === 0) return { python };
  }
  return { missing: 'no Python with torch and POT (Debian: python3-torch python3-pot)' };
}

async function wholeNetwork(fresh: () => { m: ReturnType<typeof createModel> }, o: { checkpoint?: string; referenceDir?: string; reps: number }, log: (l: string) => void): Promise<WholeNetwork> {
  const ref = o.checkpoint ? referencePython(o.referenceDir) : { missing: 'no checkpoint' };
  if ('missing' in ref) log(`reference times omitted: ${ref.missing}`);
  let oursWidths: number[] = [];
  const cpu = { default: [] as number[], 'IF-EMD': [] as number[] };
  const ours = async (method: WholeNetworkRow['method']) => {
    const { m } = fresh();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, optimalTransport: method === 'IF-EMD' ? new OptimalTransport() : null });
    const s = (performance.now() - t0) / 1e3;
    const c = process.cpuUsage(c0);
    cpu[method].push((c.user + c.system) / 1e6);
    if (method === 'IF-EMD') oursWidths = m.namedModules().flatMap(([, c]) => (c instanceof Conv2d ? [c.outChannels] : []));
    m.dispose();
    return s;
  };
  const theirs = () => {
    if ('missing' in ref) return null;
    const run = spawnSync(ref.python, ['bench/reference_prune.py', o.referenceDir!, o.checkpoint!, '1'], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`bench/reference_prune.py failed: ${run.stderr.trim().split('\n').pop()}`);
    return JSON.parse(run.stdout.trim().split('\n').pop()!) as { if_seconds: number[]; if_cpu_seconds: number[]; default_seconds: number[]; default_cpu_seconds: number[]; widths: number[]; torch: string; pot: string; threads: number };
  };
  const first = { default: await ours('default'), 'IF-EMD': await ours('IF-EMD') };
  log(`whole network, first runs (shader compilation included): default ${first.default.toFixed(2)} s, IF-EMD ${first['IF-EMD'].toFixed(2)} s`);
  cpu.default.length = cpu['IF-EMD'].length = 0; // the first runs are reported apart
  const samples = { default: [] as number[], 'IF-EMD': [] as number[], refDefault: [] as number[], refIF: [] as number[], refDefaultCpu: [] as number[], refIFCpu: [] as number[] };
  let info: ReturnType<typeof theirs> = null;
  for (let r = 0; r < o.reps; r++) {
    samples['IF-EMD'].push(await ours('IF-EMD'));
    samples.default.push(await ours('default'));
    info = theirs();
    if (info) {
      samples.refIF.push(...info.if_seconds);
      samples.refDefault.push(...info.default_seconds);
      samples.refIFCpu.push(...info.if_cpu_seconds);
      samples.refDefaultCpu.push(...info.default_cpu_seconds);
    }
    log(`whole network, repetition ${r + 1}/${o.reps}: ours IF-EMD ${samples['IF-EMD'][r].toFixed(2)} s, default ${samples.default[r].toFixed(2)} s${info ? `; reference IF ${info.if_seconds[0].toFixed(2)} s, default ${info.default_seconds[0].toFixed(2)} s` : ''}`);
  }
  const row = (method: WholeNetworkRow['method'], refSamples: number[], refCpu: number[]): WholeNetworkRow => {
    const oursMedian = median(samples[method]);
    const referenceMedian = info ? median(refSamples) : null;
    return {
      method, oursFirstSeconds: round(first[method], 3), oursSeconds: samples[method].map((v) => round(v, 3)), referenceSeconds: info ? refSamples.map((v) => round(v, 3)) : null,
      oursMedian: round(oursMedian, 3), referenceMedian: referenceMedian === null ? null : round(referenceMedian, 3),
      speedup: referenceMedian === null ? null : round(referenceMedian / oursMedian, 2),
      oursCpuSeconds: cpu[method].map((v) => round(v, 3)), referenceCpuSeconds: info ? refCpu.map((v) => round(v, 3)) : null,
    };
  };
  return {
    rows: [row('IF-EMD', samples.refIF, samples.refIFCpu), row('default', samples.refDefault, samples.refDefaultCpu)],
    oursWidths, referenceWidths: info?.widths ?? null,
    reference: info ? { torch: info.torch, pot: info.pot, threads: info.threads, dir: o.referenceDir! } : null,
    referenceMissing: 'missing' in ref ? ref.missing : null,
  };
}

/** Each group pruned alone with each method, and every group's transport problem solved at once. */
async function perGroupTimings(fresh: () => { m: ReturnType<typeof createModel> }, reg: number, log: (l: string) => void) {
  const timings: PruneTimingRow[] = [];
  const probe = createModel('vgg11_bn');
  const groupCount = dependencyGroups(probe).length;
  probe.dispose();
  for (let g = 0; g < groupCount; g++) {
    const row: PruneTimingRow = { group: g, channels: 0, defaultS: 0, emdS: 0, sinkhornS: 0 };
    for (const [key, ot] of [['defaultS', null], ['emdS', new OptimalTransport()], ['sinkhornS', new OptimalTransport({ solver: 'sinkhorn', reg })]] as const) {
      const { m } = fresh();
      const t0 = performance.now();
      const [r] = await prune(m, { importanceCriteria: 'l1', sparsity: 0.5, groupIdxs: [g], optimalTransport: ot });
      row[key] = (performance.now() - t0) / 1e3;
      row.channels = r.channels;
      m.dispose();
    }
    timings.push(row);
    log(`group ${g}: default ${row.defaultS.toFixed(2)} s, IF-EMD ${row.emdS.toFixed(2)} s, IF-Sinkhorn ${row.sinkhornS.toFixed(2)} s`);
  }

  // Every group's transport problem from the same (folded) weights, Sinkhorn in one batch vs EMD one by one.
  const { m } = fresh();
  await prune(m, { importanceCriteria: 'l1', sparsity: 0, groupIdxs: [], foldBatchNorm: true });
  const problems = [];
  for (const group of dependencyGroups(m)) {
    const importance = await groupImportance(m, group, 'l1');
    const { keptIdx } = splitByImportance(importance, keptCount(group.channels, 0.5));
    problems.push({ ...(await groupFeatures(group)), keptIdx, importance });
  }
  m.dispose();
  let t0 = performance.now();
  const sinkhornMaps = await new OptimalTransport({ solver: 'sinkhorn', reg }).maps(problems);
  const batchS = (performance.now() - t0) / 1e3;
  t0 = performance.now();
  await new OptimalTransport().maps(problems);
  const emdAllS = (performance.now() - t0) / 1e3;
  log(`all ${problems.length} groups: Sinkhorn in one batch ${batchS.toFixed(2)} s (iterations ${sinkhornMaps.map((b) => b.iterations).join(', ')}), EMD one by one ${emdAllS.toFixed(2)} s`);
  return { timings, batched: { groups: problems.length, sinkhornBatchS: batchS, emdSequentialS: emdAllS } };
}

export async function benchPrune(o: { checkpoint?: string; dataDir?: string; referenceDir?: string; evalLimit: number; quick: boolean; perGroup: boolean }, log: (l: string) => void) {
  const bytes = o.checkpoint && existsSync(o.checkpoint) ? readFileSync(o.checkpoint) : null;
  const fresh = () => {
    const m = createModel('vgg11_bn');
    const meta = bytes ? loadSafetensorsBytes(m, bytes) : {};
    return { m, meta };
  };
  const whole = await wholeNetwork(fresh, { checkpoint: bytes ? o.checkpoint : undefined, referenceDir: o.referenceDir, reps: o.quick ? 1 : 3 }, log);
  const reg = 0.05;
  const { timings, batched } = o.perGroup ? await perGroupTimings(fresh, reg, log) : { timings: [] as PruneTimingRow[], batched: null };

  const accuracy: PruneAccuracyRow[] = [];
  const dataDir = o.dataDir;
  if (bytes && dataDir && existsSync(dataDir) && o.evalLimit > 0) {
    const data = await loadCifar10(dataDir, { download: false });
    const cells = o.quick ? [[1, 0.7]] : [[1, 0.7], [2, 0.5], [2, 0.7]];
    for (const [g, s] of cells) {
      for (const [method, ot] of [['default', null], ['IF-EMD', new OptimalTransport()], ['IF-Sinkhorn', new OptimalTransport({ solver: 'sinkhorn', reg })]] as const) {
        const { m: model, meta } = fresh();
        const t = performance.now();
        await prune(model, { importanceCriteria: 'l1', sparsity: s, groupIdxs: [g], optimalTransport: ot });
        const pruneS = (performance.now() - t) / 1e3;
        const normalization = parseNormalization(meta.normalize_mean, meta.normalize_std) ?? parseNormalization('0.4914,0.4822,0.4465', '0.2023,0.1994,0.2010')!;
        const r = await evaluate(model, data.test, { normalization, limit: o.evalLimit });
        accuracy.push({ group: g, sparsity: s, method, accuracy: r.accuracy, pruneS });
        log(`group ${g} sparsity ${s} ${method}: ${r.accuracy.toFixed(2)}% (${r.count} images), pruned in ${pruneS.toFixed(2)} s`);
        model.dispose();
      }
    }
  } else {
    log('accuracy comparison skipped (needs --checkpoint, --data-dir and --eval-samples > 0)');
  }
  return { wholeNetwork: whole, timings, batched, accuracy };
}

export type PruneResult = Awaited<ReturnType<typeof benchPrune>>;

/** The shared checkpoint and CIFAR-10 ($INTRA_FUSION_SHARED or ../shared), and $INTRA_FUSION_REFERENCE. */
export function defaultSharedPaths(): { checkpoint?: string; dataDir?: string; referenceDir?: string } {
  const shared = process.env.INTRA_FUSION_SHARED ?? join(process.cwd(), '..', 'shared');
  return {
    ...(existsSync(shared) ? { checkpoint: join(shared, 'models/vgg11_bn_cifar10.safetensors'), dataDir: join(shared, 'data/cifar10') } : {}),
    ...(process.env.INTRA_FUSION_REFERENCE ? { referenceDir: process.env.INTRA_FUSION_REFERENCE } : {}),
  };
}
