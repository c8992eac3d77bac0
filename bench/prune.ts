/**
 * Pruning benchmark: time to prune every VGG11-BN group at sparsity 0.5 with default pruning, Intra-Fusion
 * with exact EMD and Intra-Fusion with Sinkhorn; all groups' Sinkhorn problems solved in one batch; and
 * EMD vs Sinkhorn accuracy side by side on the shared checkpoint (when a checkpoint and data are given).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSafetensorsBytes } from '../src/nn/checkpoint.js';
import { loadCifar10 } from '../src/data/cifar10-node.js';
import { parseNormalization } from '../src/data/cifar10.js';
import { evaluate } from '../src/nn/metrics.js';
import { createModel } from '../src/nn/models.js';
import { dependencyGroups, groupFeatures, groupImportance, OptimalTransport, prune } from '../src/prune/index.js';
import { splitByImportance } from '../src/prune/criteria.js';
import { keptCount } from '../src/prune/prune.js';

export interface PruneTimingRow { group: number; channels: number; defaultS: number; emdS: number; sinkhornS: number }
export interface PruneAccuracyRow { group: number; sparsity: number; method: string; accuracy: number; pruneS: number }

export async function benchPrune(o: { checkpoint?: string; dataDir?: string; evalLimit: number; quick: boolean }, log: (l: string) => void) {
  const bytes = o.checkpoint && existsSync(o.checkpoint) ? readFileSync(o.checkpoint) : null;
  const fresh = () => {
    const m = createModel('vgg11_bn');
    const meta = bytes ? loadSafetensorsBytes(m, bytes) : {};
    return { m, meta };
  };
  const reg = 0.05;
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
  const batched = await new OptimalTransport({ solver: 'sinkhorn', reg }).maps(problems);
  const batchS = (performance.now() - t0) / 1e3;
  t0 = performance.now();
  await new OptimalTransport().maps(problems);
  const emdAllS = (performance.now() - t0) / 1e3;
  log(`all ${problems.length} groups: Sinkhorn in one batch ${batchS.toFixed(2)} s (iterations ${batched.map((b) => b.iterations).join(', ')}), EMD one by one ${emdAllS.toFixed(2)} s`);

  const accuracy: PruneAccuracyRow[] = [];
  const dataDir = o.dataDir;
  if (bytes && dataDir && existsSync(dataDir)) {
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
    log('no checkpoint/data given: accuracy comparison skipped (pass --checkpoint and --data-dir)');
  }
  return { timings, batched: { groups: problems.length, sinkhornBatchS: batchS, emdSequentialS: emdAllS }, accuracy };
}

export function defaultSharedPaths(): { checkpoint?: string; dataDir?: string } {
  const shared = process.env.INTRA_FUSION_SHARED ?? join(process.cwd(), '..', 'shared');
  return existsSync(shared) ? { checkpoint: join(shared, 'models/vgg11_bn_cifar10.safetensors'), dataDir: join(shared, 'data/cifar10') } : {};
}
