/**
 * The browser demo: load a checkpoint and CIFAR-10 test data (file pickers, or the server's defaults),
 * pick model, group, sparsity, criterion and solver, run default pruning and Intra-Fusion on WebGPU and
 * compare accuracy, parameters, FLOPs and latency; sweep sparsities into a chart; draw the transport map.
 * Only browser-safe engine modules are imported: the same code the Node CLI runs.
 */
import { accuracyPlot, type CompareRow } from '../cli/plot.js';
import { modelFromStateDict } from '../nn/checkpoint.js';
import { IMAGENET_STATS, parseCifarBatches, parseNormalization, subset, type Cifar10Split } from '../nn/cifar10.js';
import { complexity, evaluate, inferenceSpeed } from '../nn/metrics.js';
import { createModel } from '../nn/models.js';
import { exportOnnx } from '../onnx/export.js';
import { dependencyGroups, OptimalTransport, prune } from '../prune/index.js';
import { parseSafetensors, type SafeTensorsFile } from '../tensor/safetensors.js';
import { getRuntime, initRuntime } from '../tensor/tensor.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (text: string, state: 'busy' | 'ready' | 'done' | 'error' = 'busy') => {
  $('status').textContent = text;
  $('status').dataset.state = state;
};

let checkpoint: { file: SafeTensorsFile; name: string } | null = null;
let test: Cifar10Split | null = null;

interface Measured { accuracy: number; parameters: number; flops: number; latencyMs: number }

function buildModel(): ReturnType<typeof createModel> {
  if (!checkpoint) throw new Error('Load a checkpoint first.');
  return modelFromStateDict($<HTMLSelectElement>('model').value, checkpoint.file, checkpoint.name);
}

function normalization() {
  const meta = checkpoint?.file.metadata ?? {};
  return parseNormalization(meta.normalize_mean, meta.normalize_std) ?? IMAGENET_STATS;
}

async function measure(m: ReturnType<typeof createModel>, label: string): Promise<Measured> {
  if (!test) throw new Error('Load the CIFAR-10 test data first.');
  const n = Number($<HTMLInputElement>('samples').value);
  const r = await evaluate(m, subset(test, n), {
    normalization: normalization(), batchSize: 64,
    onProgress: (d, t) => status(`${label}: evaluated ${d}/${t} images`),
  });
  const c = complexity(m);
  const speed = await inferenceSpeed(m, { batchSize: 8, reps: 2 });
  return { accuracy: r.accuracy, parameters: c.parameters, flops: c.flops, latencyMs: speed.latencyMs };
}

/** Runs default pruning and Intra-Fusion; with `onnx`, also exports both pruned models for download. */
async function runOnce(sparsity: number, withOriginal: boolean, onnx = false) {
  const group = Number($<HTMLSelectElement>('group').value);
  const criterion = $<HTMLSelectElement>('criterion').value;
  const solver = $<HTMLSelectElement>('solver').value as 'emd' | 'sinkhorn';
  const out: Record<string, Measured> = {};
  const files: Record<string, Uint8Array> = {};
  let map: { M: Float64Array; k: number; n: number } | null = null;
  if (withOriginal) {
    const m = buildModel();
    out.original = await measure(m, 'original');
    m.dispose();
  }
  for (const method of ['default', 'intra_fusion'] as const) {
    const m = buildModel();
    status(`${method === 'default' ? 'default pruning' : `Intra-Fusion (${solver})`} of group ${group} at sparsity ${sparsity}...`);
    const [r] = await prune(m, {
      importanceCriteria: criterion, sparsity, groupIdxs: [group],
      optimalTransport: method === 'default' ? null : new OptimalTransport({ solver }),
    });
    if (method === 'intra_fusion') map = { M: r.map, k: r.kept, n: r.channels };
    out[method] = await measure(m, method);
    if (onnx) {
      status(`exporting the ${method === 'default' ? 'default-pruned' : 'Intra-Fusion'} model as ONNX...`);
      files[method] = await exportOnnx(m, {
        inputShape: [3, 32, 32], graphName: $<HTMLSelectElement>('model').value,
        metadata: { method, group_idx: String(group), sparsity: String(sparsity), normalize_mean: normalization().mean.join(','), normalize_std: normalization().std.join(',') },
      });
    }
    m.dispose();
  }
  return { out, map, files };
}

function renderTable(out: Record<string, Measured>, sparsity: number) {
  const rows = ([['original', 'Original'], ['default', 'Default pruning'], ['intra_fusion', 'Intra-Fusion']] as const).filter(([k]) => out[k]);
  $('results').innerHTML = `<h3>Group ${$<HTMLSelectElement>('group').value}, sparsity ${sparsity}</h3><table id="results-table">
    <tr><th>model</th><th>accuracy %</th><th>parameters</th><th>MFLOPs</th><th>latency ms</th></tr>
    ${rows.map(([k, label]) => `<tr data-method="${k}"><td>${label}</td><td class="acc">${out[k].accuracy.toFixed(2)}</td><td>${out[k].parameters.toLocaleString('en')}</td><td>${(out[k].flops / 1e6).toFixed(1)}</td><td>${out[k].latencyMs.toFixed(1)}</td></tr>`).join('')}
  </table>`;
}

/** Download links for the pruned models as .onnx (Blob URLs, replaced on every run). */
function renderDownloads(files: Record<string, Uint8Array>, sparsity: number) {
  document.querySelectorAll<HTMLAnchorElement>('#downloads a').forEach((a) => URL.revokeObjectURL(a.href));
  const base = `${$<HTMLSelectElement>('model').value}_g${$<HTMLSelectElement>('group').value}_s${sparsity}`;
  $('downloads').innerHTML = '';
  for (const [method, label] of [['default', 'default-pruned'], ['intra_fusion', 'Intra-Fusion']] as const) {
    if (!files[method]) continue;
    const a = document.createElement('a');
    a.id = `download-${method}`;
    a.href = URL.createObjectURL(new Blob([files[method] as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    a.download = `${base}_${method}.onnx`;
    a.textContent = `Download the ${label} model (.onnx, ${(files[method].byteLength / 1e6).toFixed(1)} MB)`;
    $('downloads').append(a, ' ');
  }
}

function renderHeatmap(map: { M: Float64Array; k: number; n: number }) {
  const canvas = $<HTMLCanvasElement>('heatmap');
  canvas.width = map.n;
  canvas.height = map.k;
  canvas.style.width = `${Math.min(512, map.n * 2)}px`;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(map.n, map.k);
  let max = 0;
  for (const v of map.M) max = Math.max(max, v);
  for (let i = 0; i < map.M.length; i++) {
    const t = Math.sqrt(map.M[i] / (max || 1)); // square root so partial assignments stay visible
    img.data[i * 4] = 255 - Math.round(200 * t);
    img.data[i * 4 + 1] = 255 - Math.round(230 * t);
    img.data[i * 4 + 2] = 255 - Math.round(120 * t);
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  $('heatinfo').textContent = `${map.k} kept x ${map.n} original neurons; darker = more mass (square-root scale)`;
}

async function refreshGroups() {
  const m = createModel($<HTMLSelectElement>('model').value);
  const groups = dependencyGroups(m);
  m.dispose();
  $<HTMLSelectElement>('group').innerHTML = groups.map((g) => `<option value="${g.index}"${g.index === 1 ? ' selected' : ''}>${g.describe()}</option>`).join('');
}

async function guarded(task: () => Promise<void>) {
  for (const b of ['run', 'sweep']) $<HTMLButtonElement>(b).disabled = true;
  try {
    await task();
  } catch (e) {
    status(`error: ${(e as Error).message}`, 'error');
  } finally {
    for (const b of ['run', 'sweep']) $<HTMLButtonElement>(b).disabled = false;
  }
}

function describeLoaded() {
  $('loaded').textContent = `checkpoint: ${checkpoint ? `${checkpoint.name} (${checkpoint.file.metadata.model ?? 'model not named'})` : 'none'}; test data: ${test ? `${test.count} images` : 'none'}`;
}

async function loadCheckpointBytes(bytes: ArrayBuffer, name: string) {
  checkpoint = { file: parseSafetensors(bytes, name), name };
  const model = checkpoint.file.metadata.model;
  if (model === 'vgg11_bn' || model === 'resnet18') $<HTMLSelectElement>('model').value = model;
  await refreshGroups();
  describeLoaded();
}

function loadTestBytes(bytes: ArrayBuffer, name: string) {
  test = parseCifarBatches([{ name, bytes: new Uint8Array(bytes) }]);
  describeLoaded();
}

async function start() {
  try {
    const rt = await initRuntime(0);
    status(`WebGPU adapter: ${rt.adapterDescription}${rt.subgroups ? ' (subgroups)' : ''}`);
  } catch (e) {
    status(`error: ${(e as Error).message}`, 'error');
    return;
  }
  await refreshGroups();
  $('model').addEventListener('change', () => void refreshGroups());
  $<HTMLInputElement>('checkpoint').addEventListener('change', (ev) => void guarded(async () => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) await loadCheckpointBytes(await f.arrayBuffer(), f.name);
  }));
  $<HTMLInputElement>('testdata').addEventListener('change', (ev) => void guarded(async () => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) loadTestBytes(await f.arrayBuffer(), f.name);
  }));
  // Defaults from the demo server (`npm run demo -- --checkpoint ... --data-dir ...`), when it has them.
  try {
    const defaults = await (await fetch('defaults.json')).json() as { checkpoint?: string; test?: string };
    if (defaults.checkpoint) await loadCheckpointBytes(await (await fetch(defaults.checkpoint)).arrayBuffer(), defaults.checkpoint);
    if (defaults.test) loadTestBytes(await (await fetch(defaults.test)).arrayBuffer(), defaults.test);
  } catch {
    // No defaults: the file pickers remain.
  }
  describeLoaded();
  $('run').addEventListener('click', () => void guarded(async () => {
    const s = Number($<HTMLInputElement>('sparsity').value);
    const { out, map, files } = await runOnce(s, true, true);
    renderTable(out, s);
    renderDownloads(files, s);
    if (map) renderHeatmap(map);
    status(`done: default ${out.default.accuracy.toFixed(2)}% vs Intra-Fusion ${out.intra_fusion.accuracy.toFixed(2)}% (${getRuntime().adapterDescription})`, 'done');
  }));
  $('sweep').addEventListener('click', () => void guarded(async () => {
    const rows: CompareRow[] = [];
    const model = $<HTMLSelectElement>('model').value;
    const group = Number($<HTMLSelectElement>('group').value);
    for (const s of [0.3, 0.5, 0.7]) {
      const { out, map } = await runOnce(s, false);
      for (const method of ['default', 'intra_fusion'] as const) {
        rows.push({ file: '', model, method: method === 'default' ? 'default_pruning' : 'intra_fusion', group, sparsity: s, parameters: out[method].parameters, flops: out[method].flops, accuracy: out[method].accuracy, latencyMs: out[method].latencyMs });
      }
      if (map) renderHeatmap(map);
      $('chart').innerHTML = accuracyPlot(rows);
    }
    status('sweep done', 'done');
  }));
  status(`ready on ${getRuntime().adapterDescription}${checkpoint && test ? '' : ': load a checkpoint and the test data'}`, 'ready');
}

void start();
