/**
 * The browser demo: load a model (a built-in architecture with its checkpoint, or any ONNX CNN) and data (the
 * CIFAR-10 test batch, or images: a folder with one sub-folder per class, or a handful of loose images, picked
 * or dropped), pick input size and normalisation, then prune with default pruning, Intra-Fusion and model
 * folding side by side on WebGPU: accuracy, parameters, FLOPs, latency, the pruned models as ONNX downloads,
 * and the Intra-Fusion transport map. Only browser-safe engine modules are imported: the code the CLI runs.
 */
import { accuracyPlot, type CompareRow } from '../cli/plot.js';
import { parseCifarBatches } from '../data/cifar10.js';
import { cifar10Dataset, evaluationSubset, type Batch, type Dataset } from '../data/dataset.js';
import { decodeImageInBrowser } from '../data/decode-browser.js';
import { ImageFolderDataset, isImageFile, listImageFolder, type FolderListing, type ImageFile } from '../data/imagefolder.js';
import { NORMALIZATION_PRESETS, parseNormalization, type Normalization } from '../data/normalization.js';
import { defaultResize } from '../data/transforms.js';
import { modelFromStateDict } from '../nn/checkpoint.js';
import { complexity, evaluate, inferenceSpeed } from '../nn/metrics.js';
import { createModel, MODEL_NAMES, type ModelName } from '../nn/models.js';
import type { Module } from '../nn/module.js';
import { exportOnnx } from '../onnx/export.js';
import { importOnnx } from '../onnx/import.js';
import { dependencyGroups, OptimalTransport, prune, type ExampleInput } from '../prune/index.js';
import { noGrad } from '../tensor/autograd.js';
import { parseSafetensors, type SafeTensorsFile } from '../tensor/safetensors.js';
import { fromArray, getRuntime, initRuntime, tidy } from '../tensor/tensor.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const value = (id: string) => $<HTMLInputElement | HTMLSelectElement>(id).value;
const status = (text: string, state: 'busy' | 'ready' | 'done' | 'error' = 'busy') => {
  $('status').textContent = text;
  $('status').dataset.state = state;
};

/** What the page has loaded. */
let checkpoint: { file: SafeTensorsFile; name: string } | null = null;
let onnx: { bytes: Uint8Array; name: string; inputShape: ExampleInput; metadata: Record<string, string> } | null = null;
let cifar: { split: ReturnType<typeof parseCifarBatches>; name: string } | null = null;
let images: { files: ImageFile[]; name: string } | null = null;

const METHODS = [['default', 'none', 'Default pruning'], ['intra_fusion', 'ot', 'Intra-Fusion'], ['folding', 'folding', 'Folding']] as const;
type MethodKey = (typeof METHODS)[number][0];
interface Measured { accuracy: number; top5: number | null; parameters: number; flops: number; latencyMs: number }

// ------------------------------------------------------------------ model

function modelLabel(): string {
  return onnx ? onnx.name.replace(/\.onnx$/i, '') : value('model');
}

function buildModel(): Module {
  if (onnx) return importOnnx(onnx.bytes, onnx.name);
  if (checkpoint) return modelFromStateDict(value('model'), checkpoint.file, checkpoint.name);
  return createModel(value('model') as ModelName); // untrained weights: pruning works, accuracy is chance
}

function inputShape(): ExampleInput {
  const shape = ['in-c', 'in-h', 'in-w'].map((id) => Number(value(id)));
  if (shape.some((v) => !(Number.isInteger(v) && v >= 1))) throw new Error('The input size C H W must be three positive integers.');
  return shape as ExampleInput;
}

/** The normalisation picked: the model's own (metadata), a preset, or mean/std typed in. */
function normalization(): Normalization {
  const pick = value('norm');
  if (pick === 'model') {
    const meta = onnx?.metadata ?? checkpoint?.file.metadata ?? {};
    return parseNormalization(meta.normalize_mean, meta.normalize_std) ?? NORMALIZATION_PRESETS.imagenet;
  }
  if (pick === 'custom') {
    const n = parseNormalization(value('mean'), value('std'));
    if (!n) throw new Error('Custom normalisation: type mean and std as "r,g,b".');
    return n;
  }
  return NORMALIZATION_PRESETS[pick];
}

// ------------------------------------------------------------------ data

/** The evaluation dataset from what was loaded, with the page's input size and normalisation. */
function dataset(): { data: Dataset; labelled: boolean } {
  const [C, H, W] = inputShape();
  if (images) {
    const resize = value('resize').trim() === '' ? defaultResize([H, W]) : value('resize') === 'none' ? null : Number(value('resize'));
    const transform = { resize, crop: [H, W] as [number, number], channels: C, normalization: normalization() };
    // Images inside class sub-folders are labelled by their folder; loose images are not.
    const labelled = images.files.every((f) => f.path.includes('/'));
    const listing: FolderListing = labelled
      ? listImageFolder(images.files, images.name)
      : { classes: [], samples: images.files.filter((f) => isImageFile(f.path)).map((file) => ({ file, label: -1 })), skipped: images.files.filter((f) => !isImageFile(f.path)).map((f) => f.path) };
    return { data: new ImageFolderDataset(images.name, listing, { transform, decode: decodeImageInBrowser }), labelled };
  }
  if (cifar) {
    if ([C, H, W].join() !== '3,32,32') throw new Error(`CIFAR-10 images are 3x32x32, but the input size is ${C}x${H}x${W}.`);
    return { data: cifar10Dataset(cifar.split, normalization(), cifar.name), labelled: true };
  }
  throw new Error('Load data first: the CIFAR-10 test batch, an image folder, or some images.');
}

/** A dataset with other labels (loose images: the unpruned model's own predictions). */
function withLabels(data: Dataset, labels: Float32Array): Dataset {
  return { ...data, name: data.name, count: data.count, shape: data.shape, batch: async (idx, o): Promise<Batch> => ({ x: (await data.batch(idx, o)).x, y: Float32Array.from(idx, (i) => labels[i]) }) };
}

async function predictions(model: Module, data: Dataset): Promise<Float32Array> {
  const out = new Float32Array(data.count);
  for (let at = 0; at < data.count; at += 32) {
    const idx = Array.from({ length: Math.min(32, data.count - at) }, (_, i) => at + i);
    const { x } = await data.batch(idx);
    const logits = await noGrad(() => tidy(() => model.call(fromArray(x, [idx.length, ...data.shape])))).dataAndDispose();
    const k = logits.length / idx.length;
    idx.forEach((_, i) => {
      let best = 0;
      for (let c = 1; c < k; c++) if (logits[i * k + c] > logits[i * k + best]) best = c;
      out[at + i] = best;
    });
  }
  return out;
}

async function measure(m: Module, data: Dataset, label: string): Promise<Measured> {
  const r = await evaluate(m, data, { batchSize: 32, onProgress: (d, t) => status(`${label}: evaluated ${d}/${t} images`) });
  const shape = inputShape();
  const c = complexity(m, shape);
  const speed = await inferenceSpeed(m, { batchSize: 4, reps: 2, inputShape: shape });
  return { accuracy: r.accuracy, top5: r.top5, parameters: c.parameters, flops: c.flops, latencyMs: speed.latencyMs };
}

// ------------------------------------------------------------------ pruning

/** Prunes with every method at `sparsity` and evaluates; with `onnxOut`, also exports each pruned model. */
async function runOnce(sparsity: number, withOriginal: boolean, onnxOut = false) {
  const groupValue = value('group');
  const groupIdxs = groupValue === 'all' ? undefined : [Number(groupValue)];
  const criterion = value('criterion');
  const solver = value('solver') as 'emd' | 'sinkhorn';
  const shape = inputShape();
  let { data, labelled } = dataset();
  data = evaluationSubset(data, Number(value('samples')));
  const out: Partial<Record<MethodKey | 'original', Measured>> = {};
  const files: Partial<Record<MethodKey, Uint8Array>> = {};
  let map: { M: Float64Array; k: number; n: number } | null = null;
  const original = buildModel();
  if (!labelled) {
    status('no labels (loose images): accuracy is agreement with the unpruned model\'s predictions');
    data = withLabels(data, await predictions(original, data));
  }
  if (withOriginal) out.original = await measure(original, data, 'original');
  original.dispose();
  for (const [key, fusion, label] of METHODS) {
    const m = buildModel();
    status(`${label}${fusion === 'ot' ? ` (${solver})` : ''} of ${groupIdxs ? `group ${groupIdxs[0]}` : 'all groups'} at sparsity ${sparsity}...`);
    const report = await prune(m, {
      importanceCriteria: criterion, sparsity, groupIdxs, fusion, exampleInput: shape,
      optimalTransport: fusion === 'ot' ? new OptimalTransport({ solver }) : null,
    });
    if (key === 'intra_fusion') {
      const r = report[report.length - 1];
      map = { M: r.map, k: r.kept, n: r.channels };
    }
    out[key] = await measure(m, data, label);
    if (onnxOut) {
      status(`exporting the ${label} model as ONNX...`);
      const norm = normalization();
      files[key] = await exportOnnx(m, {
        inputShape: shape, graphName: modelLabel(),
        metadata: { method: key, group_idx: groupValue, sparsity: String(sparsity), normalize_mean: norm.mean.join(','), normalize_std: norm.std.join(',') },
      });
    }
    m.dispose();
  }
  return { out, map, files, labelled, count: data.count };
}

function renderTable(out: Partial<Record<MethodKey | 'original', Measured>>, sparsity: number, labelled: boolean, count: number) {
  const rows = [['original', 'Original'], ...METHODS.map(([k, , l]) => [k, l])].filter(([k]) => out[k as MethodKey]) as [MethodKey | 'original', string][];
  const top5 = rows.some(([k]) => out[k]!.top5 !== null);
  const head = labelled ? 'accuracy %' : 'agreement with unpruned %';
  $('results').innerHTML = `<h3>${value('group') === 'all' ? 'All groups' : `Group ${value('group')}`}, sparsity ${sparsity}, ${count} images</h3><table id="results-table">
    <tr><th>model</th><th>${head}</th>${top5 ? '<th>top-5 %</th>' : ''}<th>parameters</th><th>MFLOPs</th><th>latency ms</th></tr>
    ${rows.map(([k, label]) => `<tr data-method="${k}"><td>${label}</td><td class="acc">${out[k]!.accuracy.toFixed(2)}</td>${top5 ? `<td>${out[k]!.top5?.toFixed(2) ?? '-'}</td>` : ''}<td>${out[k]!.parameters.toLocaleString('en')}</td><td>${(out[k]!.flops / 1e6).toFixed(1)}</td><td>${out[k]!.latencyMs.toFixed(1)}</td></tr>`).join('')}
  </table>`;
}

/** Download links for the pruned models as .onnx (Blob URLs, replaced on every run). */
function renderDownloads(files: Partial<Record<MethodKey, Uint8Array>>, sparsity: number) {
  document.querySelectorAll<HTMLAnchorElement>('#downloads a').forEach((a) => URL.revokeObjectURL(a.href));
  const base = `${modelLabel()}_g${value('group')}_s${sparsity}`;
  $('downloads').innerHTML = '';
  for (const [key, , label] of METHODS) {
    const bytes = files[key];
    if (!bytes) continue;
    const a = document.createElement('a');
    a.id = `download-${key}`;
    a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    a.download = `${base}_${key}.onnx`;
    a.textContent = `${label} (.onnx, ${(bytes.byteLength / 1e6).toFixed(2)} MB)`;
    $('downloads').append(a, ' ');
  }
}

/** Colour of a value in [0, 1]: white to dark blue. */
const shade = (t: number) => [255 - Math.round(220 * t), 255 - Math.round(200 * t), 255 - Math.round(90 * t)];

/**
 * The transport map M (k kept x n original neurons), readable at 512 neurons: the original neurons are ordered
 * by the kept neuron they mostly flow to (so the map becomes a staircase of blocks, one block per kept neuron),
 * each column is scaled to its own maximum, and every cell is drawn 2-8 px wide; a second view enlarges the
 * first kept neurons with the originals fused into them, and a histogram counts originals per kept neuron.
 */
function renderHeatmap(map: { M: Float64Array; k: number; n: number }) {
  const { M, k, n } = map;
  const target = Array.from({ length: n }, (_, j) => {
    let best = 0;
    for (let i = 1; i < k; i++) if (M[i * n + j] > M[best * n + j]) best = i;
    return best;
  });
  const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => target[a] - target[b] || M[target[b] * n + b] - M[target[a] * n + a] || a - b);
  const colMax = Array.from({ length: n }, (_, j) => {
    let m = 0;
    for (let i = 0; i < k; i++) m = Math.max(m, M[i * n + j]);
    return m || 1;
  });
  const draw = (canvas: HTMLCanvasElement, rows: number, cols: number[], cell: number) => {
    canvas.width = cols.length * cell;
    canvas.height = rows * cell;
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = 'white';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    cols.forEach((j, x) => {
      for (let i = 0; i < rows; i++) {
        const t = M[i * n + j] / colMax[j];
        if (t < 1e-3) continue;
        const [r, g, b] = shade(Math.sqrt(t));
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(x * cell, i * cell, cell, cell);
      }
    });
  };
  draw($<HTMLCanvasElement>('heatmap'), k, order, Math.max(2, Math.min(8, Math.floor(1024 / n))));
  // Detail: the first kept neurons (up to 24) and the originals fused into them.
  const rows = Math.min(k, 24);
  draw($<HTMLCanvasElement>('heatdetail'), rows, order.filter((j) => target[j] < rows), 12);
  const absorbed = Array.from({ length: k }, (_, i) => target.filter((t) => t === i).length);
  const maxAbsorbed = Math.max(...absorbed);
  const hist = Array.from({ length: maxAbsorbed + 1 }, (_, c) => absorbed.filter((a) => a === c).length);
  $('heatinfo').innerHTML = `${k} kept x ${n} original neurons, originals ordered by the kept neuron they flow to, each column scaled to its maximum (darker = more mass, square-root scale).<br>
    Originals fused per kept neuron: ${hist.map((h, c) => `${c}: ${h}`).join(', ')}.`;
}

// ------------------------------------------------------------------ inputs

async function refreshGroups() {
  let m: Module;
  try {
    m = buildModel();
  } catch {
    m = createModel(value('model') as ModelName);
  }
  const groups = dependencyGroups(m, { exampleInput: inputShape() });
  m.dispose();
  $<HTMLSelectElement>('group').innerHTML = `<option value="all">all groups</option>` + groups.map((g) => `<option value="${g.index}"${g.index === Math.min(1, groups.length - 1) ? ' selected' : ''}>${g.describe()}</option>`).join('');
}

function describeLoaded() {
  const model = onnx ? `${onnx.name} (ONNX, input ${onnx.inputShape.join('x')})` : checkpoint ? `${checkpoint.name} (${checkpoint.file.metadata.model ?? 'model not named'})` : `${value('model')} (untrained)`;
  const data = images ? `${images.name}: ${images.files.filter((f) => isImageFile(f.path)).length} images${images.files.every((f) => f.path.includes('/')) ? ` in ${new Set(images.files.map((f) => f.path.split('/')[0])).size} class folders` : ' (no class folders: accuracy = agreement with the unpruned model)'}` : cifar ? `${cifar.name}: ${cifar.split.count} images` : 'none';
  $('loaded').textContent = `model: ${model}; data: ${data}`;
}

async function loadCheckpointBytes(bytes: ArrayBuffer, name: string) {
  checkpoint = { file: parseSafetensors(bytes, name), name };
  onnx = null;
  const model = checkpoint.file.metadata.model;
  if (model && (MODEL_NAMES as readonly string[]).includes(model)) $<HTMLSelectElement>('model').value = model;
  const shape = checkpoint.file.metadata.input_shape?.split(',').map(Number);
  if (shape?.length === 3) ['in-c', 'in-h', 'in-w'].forEach((id, i) => ($<HTMLInputElement>(id).value = String(shape[i])));
  await refreshGroups();
  describeLoaded();
}

async function loadOnnxBytes(bytes: Uint8Array, name: string) {
  const probe = importOnnx(bytes, name);
  onnx = { bytes, name, inputShape: [...probe.inputShape] as ExampleInput, metadata: probe.metadata };
  probe.dispose();
  ['in-c', 'in-h', 'in-w'].forEach((id, i) => ($<HTMLInputElement>(id).value = String(onnx!.inputShape[i])));
  await refreshGroups();
  describeLoaded();
}

function loadCifarBytes(bytes: ArrayBuffer, name: string) {
  cifar = { split: parseCifarBatches([{ name, bytes: new Uint8Array(bytes) }]), name };
  images = null;
  describeLoaded();
}

/** Image files with paths relative to the dropped or picked folder ("class/file.jpg"), or bare names for loose images. */
function setImages(files: { path: string; file: File }[], name: string) {
  images = { name, files: files.map(({ path, file }) => ({ path, read: async () => new Uint8Array(await file.arrayBuffer()) })) };
  cifar = null;
  describeLoaded();
}

/** The files of a drop, walking dropped folders (the folder itself is the root; its sub-folders are the classes). */
async function droppedFiles(items: DataTransferItemList): Promise<{ files: { path: string; file: File }[]; name: string }> {
  const out: { path: string; file: File }[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail));
      out.push({ path: prefix + entry.name, file });
      return;
    }
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
      if (!batch.length) break;
      for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
    }
  };
  const entries = Array.from(items, (i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => !!e);
  // One dropped folder: its sub-folders are the classes. Files and several folders: each folder is a class.
  if (entries.length === 1 && entries[0].isDirectory) {
    const reader = (entries[0] as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
      if (!batch.length) break;
      for (const e of batch) await walk(e, '');
    }
    return { files: out, name: entries[0].name };
  }
  for (const e of entries) await walk(e, '');
  return { files: out, name: 'dropped images' };
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

async function start() {
  $<HTMLSelectElement>('model').innerHTML = MODEL_NAMES.map((m) => `<option>${m}</option>`).join('');
  try {
    const rt = await initRuntime(0);
    status(`WebGPU adapter: ${rt.adapterDescription}${rt.subgroups ? ' (subgroups)' : ''}`);
  } catch (e) {
    status(`error: ${(e as Error).message}`, 'error');
    return;
  }
  await refreshGroups();
  describeLoaded();
  $('model').addEventListener('change', () => void guarded(async () => {
    onnx = null;
    await refreshGroups();
    describeLoaded();
  }));
  for (const id of ['in-c', 'in-h', 'in-w']) $(id).addEventListener('change', () => void guarded(refreshGroups));
  $('norm').addEventListener('change', () => ($('custom-norm').hidden = value('norm') !== 'custom'));
  const onFile = (id: string, f: (file: File) => Promise<void>) => $<HTMLInputElement>(id).addEventListener('change', (ev) => void guarded(async () => {
    const file = (ev.target as HTMLInputElement).files?.[0];
    if (file) await f(file);
  }));
  onFile('checkpoint', async (f) => loadCheckpointBytes(await f.arrayBuffer(), f.name));
  onFile('onnx', async (f) => loadOnnxBytes(new Uint8Array(await f.arrayBuffer()), f.name));
  onFile('testdata', async (f) => loadCifarBytes(await f.arrayBuffer(), f.name));
  $<HTMLInputElement>('folder').addEventListener('change', (ev) => void guarded(async () => {
    const list = Array.from((ev.target as HTMLInputElement).files ?? []);
    if (!list.length) return;
    // webkitRelativePath is "<picked folder>/<class>/<file>": the picked folder is the root.
    setImages(list.map((file) => ({ path: file.webkitRelativePath.split('/').slice(1).join('/'), file })), list[0].webkitRelativePath.split('/')[0]);
  }));
  $<HTMLInputElement>('images').addEventListener('change', (ev) => void guarded(async () => {
    const list = Array.from((ev.target as HTMLInputElement).files ?? []);
    if (list.length) setImages(list.map((file) => ({ path: file.name, file })), `${list.length} images`);
  }));
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => void guarded(async () => {
    ev.preventDefault();
    drop.classList.remove('over');
    const items = ev.dataTransfer?.items;
    if (!items) return;
    const onnxFile = Array.from(ev.dataTransfer!.files).find((f) => /\.onnx$/i.test(f.name));
    if (onnxFile) return loadOnnxBytes(new Uint8Array(await onnxFile.arrayBuffer()), onnxFile.name);
    const { files, name } = await droppedFiles(items);
    setImages(files, name);
  }));
  // Defaults from the demo server (`npm run demo -- --checkpoint ... --data-dir ...`), when it has them.
  try {
    const defaults = await (await fetch('defaults.json')).json() as { checkpoint?: string; test?: string };
    if (defaults.checkpoint) await loadCheckpointBytes(await (await fetch(defaults.checkpoint)).arrayBuffer(), defaults.checkpoint);
    if (defaults.test) loadCifarBytes(await (await fetch(defaults.test)).arrayBuffer(), defaults.test);
  } catch {
    // No defaults: the file pickers remain.
  }
  describeLoaded();
  $('run').addEventListener('click', () => void guarded(async () => {
    const s = Number(value('sparsity'));
    const { out, map, files, labelled, count } = await runOnce(s, true, true);
    renderTable(out, s, labelled, count);
    renderDownloads(files, s);
    if (map) renderHeatmap(map);
    status(`done: ${METHODS.map(([k, , l]) => `${l} ${out[k]!.accuracy.toFixed(2)}%`).join(', ')} (original ${out.original!.accuracy.toFixed(2)}%; ${getRuntime().adapterDescription})`, 'done');
  }));
  $('sweep').addEventListener('click', () => void guarded(async () => {
    const rows: CompareRow[] = [];
    const group = value('group') === 'all' ? -1 : Number(value('group'));
    for (const s of [0.3, 0.5, 0.7]) {
      const { out, map } = await runOnce(s, false);
      for (const [key] of METHODS) {
        const m = out[key]!;
        rows.push({ file: '', model: modelLabel(), method: key === 'default' ? 'default_pruning' : key, group, sparsity: s, parameters: m.parameters, flops: m.flops, accuracy: m.accuracy, top5: m.top5, latencyMs: m.latencyMs });
      }
      if (map) renderHeatmap(map);
      $('chart').innerHTML = accuracyPlot(rows);
    }
    status('sweep done', 'done');
  }));
  status(`ready on ${getRuntime().adapterDescription}${(checkpoint || onnx) && (cifar || images) ? '' : ': load a model and data'}`, 'ready');
}

void start();
