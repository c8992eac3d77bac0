/**
 * Datasets (src/data): decoding and eval transforms against torchvision's bytes (fixtures made once by
 * test/fixtures/images/generate.py with Debian's python3-torchvision), tensor files from numpy, an image folder
 * made here evaluated against a float64 forward pass, and one clear error per kind of bad data.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluationIndices } from '../src/data/dataset.js';
import { decodeImage, detectDataFormat, openDataset } from '../src/data/node.js';
import { IMAGENET_STATS, IDENTITY_STATS } from '../src/data/normalization.js';
import { parseNpy } from '../src/data/tensors.js';
import { resizeBilinear, transformPixels, type EvalTransform, type RawImage } from '../src/data/transforms.js';
import { DataError } from '../src/errors.js';
import { AdaptiveAvgPool2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { evaluate } from '../src/nn/metrics.js';
import { serializeSafetensors } from '../src/tensor/safetensors.js';
import { gpu, refAdaptiveAvgPool, refConv } from './helpers.js';

const FIXTURES = 'test/fixtures/images';
const manifest = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8')) as {
  classes: string[];
  cases: { file: string; label: number; resize: number | null; crop: number; expected: string }[];
  normalized: { file: string; resize: number; crop: number; mean: number[]; std: number[]; expected: string };
};
const transform = (resize: number | null, crop: number, normalization = IDENTITY_STATS): EvalTransform => ({ resize, crop: [crop, crop], channels: 3, normalization });

describe('decoding and eval transforms equal torchvision/PIL', () => {
  it('every fixture image (PNG, JPEG, WebP, grey, grey+alpha, RGBA, palette; shrunk, enlarged, crop only) within 1/255', async () => {
    const worst: Record<string, number> = {};
    for (const c of manifest.cases) {
      const img = transformPixels(await decodeImage(readFileSync(join(FIXTURES, 'files', c.file)), c.file), transform(c.resize, c.crop));
      const want = parseNpy(readFileSync(join(FIXTURES, 'expected', c.expected)));
      expect(want.shape).toEqual([3, c.crop, c.crop]);
      let max = 0;
      const plane = c.crop * c.crop;
      for (let ch = 0; ch < 3; ch++) for (let p = 0; p < plane; p++) max = Math.max(max, Math.abs(img.data[p * 3 + ch] - want.data[ch * plane + p]));
      worst[`${c.file} r${c.resize} c${c.crop}`] = max;
    }
    // Within one level (1/255) everywhere; in fact the bytes are identical on these images.
    expect(Object.entries(worst).filter(([, d]) => d > 1)).toEqual([]);
    expect(Math.max(...Object.values(worst))).toBe(0);
    expect(Object.keys(worst).length).toBe(manifest.cases.length);
  });

  it('ToTensor + Normalize equals torchvision float32 values', async () => {
    const n = manifest.normalized;
    const ds = (await openDataset(join(FIXTURES, 'files'), { transform: transform(n.resize, n.crop, { mean: n.mean, std: n.std }), normalization: IMAGENET_STATS })).dataset;
    const files = manifest.cases.filter((c) => c.resize === 64).map((c) => c.file);
    const { x } = await ds.batch([files.indexOf(n.file)]);
    const want = parseNpy(readFileSync(join(FIXTURES, 'expected', n.expected)));
    let max = 0;
    for (let i = 0; i < want.data.length; i++) max = Math.max(max, Math.abs(x[i] - want.data[i]));
    expect(max).toBeLessThan(2e-6);
  });

  it('the resize is antialiased: shrinking 8x averages (a 1-pixel checkerboard becomes flat grey)', () => {
    const W = 64;
    const data = new Uint8Array(W * W).map((_, i) => ((i % W) + Math.floor(i / W)) % 2 ? 255 : 0);
    const out = resizeBilinear({ data, width: W, height: W, channels: 1 }, 8, 8);
    expect(Math.min(...out.data)).toBeGreaterThanOrEqual(126);
    expect(Math.max(...out.data)).toBeLessThanOrEqual(129);
  });
});

describe('image folders and tensor files', () => {
  it('lists classes sorted, samples in torchvision order, and skips (and counts) non-image files', async () => {
    const { dataset, skipped, format } = await openDataset(join(FIXTURES, 'files'), { transform: transform(64, 56), normalization: IDENTITY_STATS });
    expect(format).toBe('imagefolder');
    expect(dataset.classes).toEqual(manifest.classes);
    expect(skipped).toEqual(['a/notes.txt']);
    const want = [...new Map(manifest.cases.map((c) => [c.file, c.label])).values()];
    const { y } = await dataset.batch(Array.from({ length: dataset.count }, (_, i) => i));
    expect(Array.from(y)).toEqual(want);
    // A subset of data sorted by class is spread over it, so every class is in it.
    expect(Array.from(evaluationIndices(dataset, 3))).toEqual([0, 3, 6]);
  });

  it('reads x and y from np.savez (uint8 pixels, normalised), np.savez_compressed and x.npy/y.npy (floats as they are), and safetensors', async () => {
    const dir = 'test/fixtures/tensors';
    const norm = { mean: [0.5, 0.25, 0.75], std: [0.5, 0.25, 0.125] };
    const open = async (p: string) => (await openDataset(p, { transform: transform(null, 5), normalization: norm })).dataset;
    const pixels = await open(join(dir, 'pixels.npz'));
    const floats = await open(join(dir, 'floats_compressed.npz'));
    const folder = await open(join(dir, 'xy'));
    expect(detectDataFormat(join(dir, 'xy'))).toBe('tensors');
    for (const d of [pixels, floats, folder]) expect([d.count, ...d.shape]).toEqual([6, 3, 5, 7]);
    const all = [0, 1, 2, 3, 4, 5];
    const p = await pixels.batch(all);
    expect(Array.from(p.y)).toEqual([0, 4, 2, 1, 3, 4]);
    // pixel 0 of sample 1, channel 2: (v / 255 - 0.75) / 0.125, v read from the raw file.
    const raw = readFileSync(join(dir, 'pixels.npz'));
    const x8 = parseNpy(raw.subarray(raw.indexOf(Buffer.from('\x93NUMPY', 'latin1'))));
    expect(p.x[105 + 70]).toBeCloseTo((x8.data[105 + 70] / 255 - 0.75) / 0.125, 5);
    const f = await floats.batch(all);
    const g = await folder.batch(all);
    expect(Array.from(f.x)).toEqual(Array.from(g.x)); // float64 x.npy and float32 npz hold the same values
    expect(Array.from(g.y)).toEqual([0, 4, 2, 1, 3, 4]);
    const tmp = mkdtempSync(join(tmpdir(), 'if-tensors-'));
    try {
      const st = join(tmp, 'data.safetensors');
      writeFileSync(st, serializeSafetensors(new Map([['x', { shape: [6, 3, 5, 7], values: f.x }], ['y', { shape: [6], values: BigInt64Array.from([0n, 4n, 2n, 1n, 3n, 4n]) }]])));
      const s = await (await open(st)).batch(all);
      expect(Array.from(s.x)).toEqual(Array.from(f.x));
      expect(Array.from(s.y)).toEqual([0, 4, 2, 1, 3, 4]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

/** Writes an image folder: classes c0..c6, PNG and JPEG at odd sizes, one grey-scale and one RGBA image. */
async function makeFolder(root: string): Promise<void> {
  const rnd = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (Math.sin(i * 0.37 + seed) * 90 + 128 + ((i * 7919 + seed * 31) % 37)) & 255));
  const specs: [string, number, number, number, 'png' | 'jpg'][] = [
    ['c0/a.png', 71, 53, 3, 'png'], ['c0/b.jpg', 90, 67, 3, 'jpg'], ['c1/grey.png', 65, 80, 1, 'png'], ['c2/rgba.png', 77, 64, 4, 'png'],
    ['c3/x.jpg', 64, 64, 3, 'jpg'], ['c4/y.png', 101, 70, 3, 'png'], ['c5/z.jpg', 66, 99, 3, 'jpg'], ['c6/w.png', 80, 65, 3, 'png'], ['c6/v.jpg', 70, 70, 3, 'jpg'],
  ];
  for (const [i, [rel, w, h, ch, kind]] of specs.entries()) {
    mkdirSync(join(root, rel.split('/')[0]), { recursive: true });
    const img = sharp(rnd(w * h * ch, i), { raw: { width: w, height: h, channels: ch as 1 | 3 | 4 } });
    writeFileSync(join(root, rel), await (kind === 'png' ? img.png() : img.jpeg({ quality: 90 })).toBuffer());
  }
}

describe('evaluating an image folder', () => {
  let root = '';
  beforeAll(async () => {
    await gpu();
    root = mkdtempSync(join(tmpdir(), 'if-folder-'));
    await makeFolder(join(root, 'images'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('a small CNN at 64x64 on the folder equals a float64 forward pass on the same decoded tensors (top-1, top-5, loss)', async () => {
    const { dataset } = await openDataset(join(root, 'images'), { transform: transform(73, 64, IMAGENET_STATS), normalization: IMAGENET_STATS });
    expect(dataset.classes).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    const conv = new Conv2d(3, 8, 5, 2, 2);
    const fc = new Linear(8, 7);
    const model = new Sequential(conv, new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), fc);
    const r = await evaluate(model, dataset, { batchSize: 4 });
    // The reference: float64 forward on the batch the dataset produced.
    const { x, y } = await dataset.batch(Array.from({ length: dataset.count }, (_, i) => i));
    const N = dataset.count;
    const [w, b, fw, fb] = await Promise.all([conv.weight.data(), conv.bias!.data(), fc.weight.data(), fc.bias!.data()]);
    const h = refConv({ N, C: 3, H: 64, W: 64, O: 8, KH: 5, KW: 5, stride: 2, pad: 2 }, x, w, b).y.map((v) => Math.max(v, 0));
    const pooled = refAdaptiveAvgPool(h, [N, 8, 32, 32], 1, 1, new Float64Array(N * 8)).y;
    let top1 = 0, top5 = 0, loss = 0;
    for (let n = 0; n < N; n++) {
      const logits = Array.from({ length: 7 }, (_, k) => fb[k] + Array.from({ length: 8 }, (_, c) => fw[k * 8 + c] * pooled[n * 8 + c]).reduce((s, v) => s + v, 0));
      const label = y[n];
      const rank = logits.filter((v) => v > logits[label]).length;
      top1 += rank === 0 ? 1 : 0;
      top5 += rank < 5 ? 1 : 0;
      const m = Math.max(...logits);
      loss += m + Math.log(logits.reduce((s, v) => s + Math.exp(v - m), 0)) - logits[label];
    }
    expect(r.count).toBe(N);
    expect(r.accuracy).toBeCloseTo((100 * top1) / N, 6);
    expect(r.top5).toBeCloseTo((100 * top5) / N, 6);
    expect(r.loss).toBeCloseTo(loss / N, 4);
    model.dispose();
  });

  it('bad data: one clear error each', async () => {
    const t = transform(73, 64);
    const open = (p: string, o: Partial<EvalTransform> = {}) => openDataset(p, { transform: { ...t, ...o }, normalization: IDENTITY_STATS });
    mkdirSync(join(root, 'empty'));
    await expect(open(join(root, 'empty'))).rejects.toThrow(/is an empty folder/);
    await expect(open(join(root, 'empty'), {}).catch((e: Error) => e)).resolves.toBeInstanceOf(DataError);
    mkdirSync(join(root, 'noimages/cat'), { recursive: true });
    writeFileSync(join(root, 'noimages/cat/readme.txt'), 'x');
    await expect(open(join(root, 'noimages'))).rejects.toThrow(/class folder cat has no images/);
    mkdirSync(join(root, 'corrupt/cat'), { recursive: true });
    writeFileSync(join(root, 'corrupt/cat/broken.jpg'), 'not a jpeg');
    const corrupt = (await open(join(root, 'corrupt'))).dataset;
    await expect(corrupt.batch([0])).rejects.toThrow(/corrupt\/cat\/broken\.jpg could not be decoded as an image/);
    // Crop only (no resize): a 65x80 image cannot give a 96x96 crop.
    const small = (await open(join(root, 'images'), { resize: null, crop: [96, 96] })).dataset;
    await expect(small.batch([0])).rejects.toThrow(/c0\/a\.png is 71x53, smaller than the 96x96 crop/);
    // A label the model has no output for.
    const tmp = join(root, 'labels.safetensors');
    writeFileSync(tmp, serializeSafetensors(new Map([['x', { shape: [2, 3, 4, 4], values: new Float32Array(96) }], ['y', { shape: [2], values: BigInt64Array.from([1n, 9n]) }]])));
    const model = new Sequential(new Flatten(), new Linear(48, 5));
    await expect(evaluate(model, (await open(tmp)).dataset)).rejects.toThrow(/sample 1 has label 9, outside the model's 5 classes \(0\.\.4\)/);
    model.dispose();
    await expect(open(join(root, 'nothing-here'))).rejects.toThrow(/does not exist/);
  });
});

export type { RawImage };
