/**
 * VGG11/13/16/19 (+BN) and ResNet18/34/50 in the CIFAR and ImageNet styles (issue 9): state_dict names and
 * shapes against torchvision's definitions written out here independently, parameter counts pinned to
 * torchvision's and the reference's, and CIFAR forward passes against a float64 CPU forward of the same weights.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, GpuError, UnsupportedError } from '../src/errors.js';
import { setInitSeed } from '../src/nn/init.js';
import { BatchNorm2d, Conv2d } from '../src/nn/layers.js';
import { createModel, MODEL_NAMES, type ModelName, type Stem } from '../src/nn/models.js';
import type { Module } from '../src/nn/module.js';
import { ResNet } from '../src/nn/resnet.js';
import { Dropout, VGG, VGG_CFGS } from '../src/nn/vgg.js';
import { noGrad } from '../src/tensor/autograd.js';
import { assign, destroyRuntime, fromArray, getRuntime, tidy } from '../src/tensor/tensor.js';
import { expectClose, gpu, randArray, rng } from './helpers.js';

beforeAll(gpu);
afterAll(destroyRuntime);

// ------------------------------------------------------------------ torchvision's definitions, written out

/** torchvision's cfgs A, B, D, E. */
const CFGS: Record<string, (number | 'M')[]> = {
  vgg11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'],
  vgg19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M'],
};
const RESNETS: Record<string, { bottleneck: boolean; blocks: number[] }> = {
  resnet18: { bottleneck: false, blocks: [2, 2, 2, 2] },
  resnet34: { bottleneck: false, blocks: [3, 4, 6, 3] },
  resnet50: { bottleneck: true, blocks: [3, 4, 6, 3] },
};

type Entry = [name: string, shape: number[]];
const convEntries = (p: string, i: number, o: number, k: number, bias: boolean): Entry[] =>
  bias ? [[`${p}.weight`, [o, i, k, k]], [`${p}.bias`, [o]]] : [[`${p}.weight`, [o, i, k, k]]];
const bnEntries = (p: string, c: number): Entry[] =>
  ['weight', 'bias', 'running_mean', 'running_var'].map((n) => [`${p}.${n}`, [c]]);
const linearEntries = (p: string, i: number, o: number): Entry[] => [[`${p}.weight`, [o, i]], [`${p}.bias`, [o]]];

/**
 * The state_dict (less num_batches_tracked) of torchvision's model, or of the reference's CIFAR model: every
 * conv of the CIFAR models and every VGG conv has a bias; the CIFAR ResNet names its projection `shortcut` and its
 * classifier `linear`, torchvision `downsample` and `fc`.
 */
function expectedStateDict(name: string, stem: Stem, numClasses: number, hidden = 4096): Entry[] {
  const out: Entry[] = [];
  if (name.startsWith('vgg')) {
    const [family, bn] = name.split('_');
    let i = 0;
    let c = 3;
    for (const v of CFGS[family]) {
      if (v === 'M') { i++; continue; }
      out.push(...convEntries(`features.${i}`, c, v, 3, true));
      if (bn) out.push(...bnEntries(`features.${i + 1}`, v));
      i += bn ? 3 : 2; // conv, (bn,) relu
      c = v;
    }
    if (stem === 'cifar') return [...out, ...linearEntries('classifier', c, numClasses)];
    return [...out, ...linearEntries('classifier.0', c * 7 * 7, hidden), ...linearEntries('classifier.3', hidden, hidden),
      ...linearEntries('classifier.6', hidden, numClasses)];
  }
  const { bottleneck, blocks } = RESNETS[name];
  const bias = stem === 'cifar';
  out.push(...convEntries('conv1', 3, 64, stem === 'cifar' ? 3 : 7, bias), ...bnEntries('bn1', 64));
  let inPlanes = 64;
  [64, 128, 256, 512].forEach((planes, s) => {
    for (let b = 0; b < blocks[s]; b++) {
      const p = `layer${s + 1}.${b}`;
      const outPlanes = bottleneck ? 4 * planes : planes;
      if (bottleneck) {
        out.push(...convEntries(`${p}.conv1`, inPlanes, planes, 1, bias), ...bnEntries(`${p}.bn1`, planes));
        out.push(...convEntries(`${p}.conv2`, planes, planes, 3, bias), ...bnEntries(`${p}.bn2`, planes));
        out.push(...convEntries(`${p}.conv3`, planes, outPlanes, 1, bias), ...bnEntries(`${p}.bn3`, outPlanes));
      } else {
        out.push(...convEntries(`${p}.conv1`, inPlanes, planes, 3, bias), ...bnEntries(`${p}.bn1`, planes));
        out.push(...convEntries(`${p}.conv2`, planes, planes, 3, bias), ...bnEntries(`${p}.bn2`, planes));
      }
      const stride = s > 0 && b === 0 ? 2 : 1;
      if (stride !== 1 || inPlanes !== outPlanes) {
        const sc = stem === 'cifar' ? 'shortcut' : 'downsample';
        out.push(...convEntries(`${p}.${sc}.0`, inPlanes, outPlanes, 1, bias), ...bnEntries(`${p}.${sc}.1`, outPlanes));
      }
      inPlanes = outPlanes;
    }
  });
  return [...out, ...linearEntries(stem === 'cifar' ? 'linear' : 'fc', inPlanes, numClasses)];
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** Trainable parameters: everything but BN running statistics. */
const expectedParameters = (entries: Entry[]) =>
  entries.filter(([n]) => !/running_(mean|var)$/.test(n)).reduce((s, [, shape]) => s + product(shape), 0);

/** torchvision's ImageNet head (first Linear 392 MiB) does not fit lavapipe's 128 MiB buffers; tests use a smaller one. */
const TEST_HIDDEN = 64;

function build(name: ModelName, stem: Stem, numClasses: number): Module {
  if (stem === 'imagenet' && name.startsWith('vgg')) {
    const [family, bn] = name.split('_') as [keyof typeof VGG_CFGS, string?];
    return new VGG(VGG_CFGS[family], numClasses, { batchNorm: !!bn, stem, hiddenFeatures: TEST_HIDDEN });
  }
  return createModel(name, { numClasses, stem });
}

const entriesOf = (m: Module): Entry[] => m.stateTensors().map(([n, t]) => [n, [...t.shape]]);

describe('architectures: names and parameter counts', () => {
  it('the written-out state_dicts have torchvision\'s and the reference\'s parameter counts', () => {
    const torchvision1000: Record<string, number> = {
      vgg11: 132_863_336, vgg11_bn: 132_868_840, vgg13: 133_047_848, vgg13_bn: 133_053_736,
      vgg16: 138_357_544, vgg16_bn: 138_365_992, vgg19: 143_667_240, vgg19_bn: 143_678_248,
      resnet18: 11_689_512, resnet34: 21_797_672, resnet50: 25_557_032,
    };
    for (const [name, count] of Object.entries(torchvision1000)) {
      expect(expectedParameters(expectedStateDict(name, 'imagenet', 1000)), name).toBe(count);
    }
    // The reference's CIFAR-10 models (README, test/nn.test.ts); ResNet18 = kuangliu's 11,173,962 + 4,800 conv biases.
    expect(expectedParameters(expectedStateDict('vgg11_bn', 'cifar', 10))).toBe(9_231_114);
    expect(expectedParameters(expectedStateDict('resnet18', 'cifar', 10))).toBe(11_178_762);
    // torchvision's state_dict lengths: resnet18 122 and resnet50 320 entries, less 20 and 53 num_batches_tracked.
    expect(expectedStateDict('resnet18', 'imagenet', 1000)).toHaveLength(122 - 20);
    expect(expectedStateDict('resnet50', 'imagenet', 1000)).toHaveLength(320 - 53);
  });

  for (const stem of ['cifar', 'imagenet'] as const) {
    for (const name of MODEL_NAMES) {
      it(`${name} (${stem}): state_dict names, shapes and parameter counts for 10 and 100 classes`, () => {
        for (const numClasses of [10, 100]) {
          const m = build(name, stem, numClasses);
          try {
            const expected = expectedStateDict(name, stem, numClasses, TEST_HIDDEN);
            expect(entriesOf(m)).toEqual(expected);
            expect(m.parameterCount()).toBe(expectedParameters(expected));
          } finally {
            m.dispose();
          }
        }
      });
    }
  }

  it('ResNets stride on the first block\'s (first) 3x3 conv and its projection: torchvision v1.5, not on the 1x1 reduce', () => {
    for (const stem of ['cifar', 'imagenet'] as const) {
      for (const name of ['resnet18', 'resnet50'] as const) {
        const m = createModel(name, { stem });
        const threeByThree = name === 'resnet50' ? 'conv2' : 'conv1'; // a Bottleneck's conv1 is the 1x1 reduce
        const stridedPath = new RegExp(`^layer[234]\\.0\\.(${threeByThree}|shortcut\\.0|downsample\\.0)$`);
        for (const [path, mod] of m.namedModules()) {
          if (!(mod instanceof Conv2d) || path === 'conv1') continue;
          expect(mod.stride, `${name} ${stem} ${path}`).toBe(stridedPath.test(path) ? 2 : 1);
        }
        m.dispose();
      }
    }
    const imagenet = createModel('resnet18', { stem: 'imagenet' }) as ResNet;
    expect([imagenet.conv1.kernelSize, imagenet.conv1.stride, imagenet.conv1.padding]).toEqual([7, 2, 3]);
    expect([imagenet.maxpool?.kernelSize, imagenet.maxpool?.stride, imagenet.maxpool?.padding]).toEqual([3, 2, 1]);
    expect(imagenet.avgpool?.outputSize).toEqual([1, 1]);
    imagenet.dispose();
  });

  it('torchvision\'s full ImageNet VGG head builds where the device allows it, else fails with a clear GpuError', () => {
    const firstLinearBytes = 512 * 7 * 7 * 4096 * 4;
    const fits = firstLinearBytes <= getRuntime().device.limits.maxStorageBufferBindingSize;
    if (fits) {
      const m = createModel('vgg16', { stem: 'imagenet', numClasses: 1000 });
      expect(m.parameterCount()).toBe(138_357_544);
      m.dispose();
    } else {
      expect(() => createModel('vgg16', { stem: 'imagenet', numClasses: 1000 })).toThrow(GpuError);
      expect(() => createModel('vgg11', { stem: 'imagenet' })).toThrow(/411041792 bytes exceeds .*maxStorageBufferBindingSize/);
    }
  });

  it('createModel: CIFAR style with 10 classes by default, clear errors for unknown names, stems and class counts', () => {
    const vgg = createModel('vgg11_bn');
    expect(vgg.parameterCount()).toBe(9_231_114);
    vgg.dispose();
    const resnet = createModel('resnet18');
    expect(entriesOf(resnet)).toEqual(expectedStateDict('resnet18', 'cifar', 10));
    resnet.dispose();
    // @ts-expect-error not a built-in name (the types refuse it; a JavaScript caller gets the error)
    expect(() => createModel('resnet101')).toThrow(ArgumentError);
    // @ts-expect-error as above
    expect(() => createModel('resnet101')).toThrow(/choose one of: vgg11_bn, resnet18, vgg11, .*resnet50\./);
    expect(() => createModel('resnet18', { stem: 'tiny' as Stem })).toThrow(/Unknown stem "tiny"; choose one of: cifar, imagenet/);
    expect(() => createModel('vgg11', { numClasses: 0 })).toThrow(ArgumentError);
  });

  it('ImageNet VGG: features pooled to 7x7; Dropout is the identity in eval mode and refuses training mode', () => {
    const m = new VGG(VGG_CFGS.vgg11, 10, { batchNorm: false, stem: 'imagenet', hiddenFeatures: TEST_HIDDEN });
    expect(m.avgpool?.outputSize).toEqual([7, 7]);
    const dropout = (m.classifier as unknown as { at(i: number): Module }).at(2);
    expect(dropout).toBeInstanceOf(Dropout);
    const x = fromArray([1, 2, 3], [1, 3]);
    expect(() => dropout.call(x)).toThrow(UnsupportedError);
    expect(() => dropout.call(x)).toThrow(/Dropout classifier\.2/);
    m.eval();
    expect(dropout.call(x)).toBe(x);
    x.dispose();
    m.dispose();
  });
});

// ------------------------------------------------------------------ float64 CPU forward from the definitions

/** One image, channels-first, in float64. */
interface Act { data: Float64Array; c: number; h: number; w: number }

function conv64(x: Act, w: Float32Array, b: Float32Array | undefined, o: number, k: number, stride: number, pad: number): Act {
  const oh = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(o * oh * ow);
  for (let oc = 0; oc < o; oc++) {
    const plane = y.subarray(oc * oh * ow, (oc + 1) * oh * ow);
    if (b) plane.fill(b[oc]);
    for (let c = 0; c < x.c; c++) {
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          const wv = w[((oc * x.c + c) * k + ky) * k + kx];
          for (let oy = 0; oy < oh; oy++) {
            const iy = oy * stride - pad + ky;
            if (iy < 0 || iy >= x.h) continue;
            const row = (c * x.h + iy) * x.w;
            for (let ox = 0; ox < ow; ox++) {
              const ix = ox * stride - pad + kx;
              if (ix >= 0 && ix < x.w) plane[oy * ow + ox] += wv * x.data[row + ix];
            }
          }
        }
      }
    }
  }
  return { data: y, c: o, h: oh, w: ow };
}

/** Eval-mode BatchNorm with the running statistics. */
function bn64(x: Act, sd: Map<string, Float32Array>, p: string): Act {
  const [g, b, mean, v] = ['weight', 'bias', 'running_mean', 'running_var'].map((n) => sd.get(`${p}.${n}`)!);
  const y = new Float64Array(x.data.length);
  const hw = x.h * x.w;
  for (let c = 0; c < x.c; c++) {
    const scale = g[c] / Math.sqrt(v[c] + 1e-5);
    for (let i = c * hw; i < (c + 1) * hw; i++) y[i] = (x.data[i] - mean[c]) * scale + b[c];
  }
  return { ...x, data: y };
}

const relu64 = (x: Act): Act => ({ ...x, data: x.data.map((v) => Math.max(v, 0)) });
const add64 = (a: Act, b: Act): Act => ({ ...a, data: a.data.map((v, i) => v + b.data[i]) });

/** Max (padding never wins: -Infinity) or average pooling, k x k windows. */
function pool64(kind: 'max' | 'avg', x: Act, k: number, stride: number, pad = 0): Act {
  const oh = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(x.c * oh * ow);
  for (let c = 0; c < x.c; c++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let acc = kind === 'max' ? -Infinity : 0;
        for (let ky = 0; ky < k; ky++) {
          for (let kx = 0; kx < k; kx++) {
            const iy = oy * stride - pad + ky;
            const ix = ox * stride - pad + kx;
            if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
            const v = x.data[(c * x.h + iy) * x.w + ix];
            acc = kind === 'max' ? Math.max(acc, v) : acc + v / (k * k);
          }
        }
        y[(c * oh + oy) * ow + ox] = acc;
      }
    }
  }
  return { data: y, c: x.c, h: oh, w: ow };
}

/** PyTorch's adaptive average pooling: cell i averages rows floor(i*H/n) .. ceil((i+1)*H/n) - 1, same for columns. */
function adaptiveAvg64(x: Act, n: number): Act {
  const y = new Float64Array(x.c * n * n);
  for (let c = 0; c < x.c; c++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const [y0, y1, x0, x1] = [Math.floor((i * x.h) / n), Math.ceil(((i + 1) * x.h) / n), Math.floor((j * x.w) / n), Math.ceil(((j + 1) * x.w) / n)];
        let s = 0;
        for (let r = y0; r < y1; r++) for (let q = x0; q < x1; q++) s += x.data[(c * x.h + r) * x.w + q];
        y[(c * n + i) * n + j] = s / ((y1 - y0) * (x1 - x0));
      }
    }
  }
  return { data: y, c: x.c, h: n, w: n };
}

function linear64(v: Float64Array, w: Float32Array, b: Float32Array): Float64Array {
  const out = new Float64Array(b.length);
  for (let o = 0; o < b.length; o++) {
    let s = b[o];
    for (let i = 0; i < v.length; i++) s += w[o * v.length + i] * v[i];
    out[o] = s;
  }
  return out;
}

/** The logits of torchvision's (or the reference's) model for one image, from its state_dict, in float64. */
function referenceForward(name: string, stem: Stem, sd: Map<string, Float32Array>, image: Float32Array, size: number): Float64Array {
  const w = (k: string) => sd.get(`${k}.weight`)!;
  const conv = (x: Act, p: string, o: number, k: number, stride: number, pad: number) => conv64(x, w(p), sd.get(`${p}.bias`), o, k, stride, pad);
  let x: Act = { data: Float64Array.from(image), c: 3, h: size, w: size };
  if (name.startsWith('vgg')) {
    const [family, bn] = name.split('_');
    let i = 0;
    for (const v of CFGS[family]) {
      if (v === 'M') { x = pool64('max', x, 2, 2); i++; continue; }
      x = conv(x, `features.${i}`, v, 3, 1, 1);
      if (bn) x = bn64(x, sd, `features.${i + 1}`);
      x = relu64(x);
      i += bn ? 3 : 2;
    }
    if (stem === 'cifar') return linear64(x.data, w('classifier'), sd.get('classifier.bias')!);
    let h = adaptiveAvg64(x, 7).data; // torchvision's Dropout is the identity in eval mode
    h = linear64(h, w('classifier.0'), sd.get('classifier.0.bias')!).map((v) => Math.max(v, 0));
    h = linear64(h, w('classifier.3'), sd.get('classifier.3.bias')!).map((v) => Math.max(v, 0));
    return linear64(h, w('classifier.6'), sd.get('classifier.6.bias')!);
  }
  const { bottleneck, blocks } = RESNETS[name];
  x = relu64(bn64(stem === 'cifar' ? conv(x, 'conv1', 64, 3, 1, 1) : conv(x, 'conv1', 64, 7, 2, 3), sd, 'bn1'));
  if (stem === 'imagenet') x = pool64('max', x, 3, 2, 1);
  [64, 128, 256, 512].forEach((planes, s) => {
    for (let b = 0; b < blocks[s]; b++) {
      const p = `layer${s + 1}.${b}`;
      const stride = s > 0 && b === 0 ? 2 : 1;
      const outPlanes = bottleneck ? 4 * planes : planes;
      let h: Act;
      if (bottleneck) {
        h = relu64(bn64(conv(x, `${p}.conv1`, planes, 1, 1, 0), sd, `${p}.bn1`));
        h = relu64(bn64(conv(h, `${p}.conv2`, planes, 3, stride, 1), sd, `${p}.bn2`));
        h = bn64(conv(h, `${p}.conv3`, outPlanes, 1, 1, 0), sd, `${p}.bn3`);
      } else {
        h = relu64(bn64(conv(x, `${p}.conv1`, planes, 3, stride, 1), sd, `${p}.bn1`));
        h = bn64(conv(h, `${p}.conv2`, planes, 3, 1, 1), sd, `${p}.bn2`);
      }
      const sc = `${p}.${stem === 'cifar' ? 'shortcut' : 'downsample'}`;
      const identity = stride === 1 && x.c === outPlanes ? x : bn64(conv(x, `${sc}.0`, outPlanes, 1, stride, 0), sd, `${sc}.1`);
      x = relu64(add64(h, identity));
    }
  });
  // CIFAR: avg_pool2d(4) on the 4x4 map of a 32x32 input; ImageNet: global average pooling.
  x = stem === 'cifar' ? pool64('avg', x, 4, 4) : adaptiveAvg64(x, 1);
  return linear64(x.data, w(stem === 'cifar' ? 'linear' : 'fc'), sd.get(stem === 'cifar' ? 'linear.bias' : 'fc.bias')!);
}

/** Random BN affine parameters and running statistics, so that eval-mode BN is not the identity. */
function randomizeBatchNorm(m: Module, seed: number): void {
  const r = rng(seed);
  for (const [, mod] of m.namedModules()) {
    if (!(mod instanceof BatchNorm2d)) continue;
    const n = mod.numFeatures;
    const around = (centre: number, spread: number) => randArray(r, n, spread).map((v) => v + centre);
    assign(mod.weight, around(1, 0.5));
    assign(mod.bias, around(0, 0.2));
    assign(mod.running_mean, around(0, 0.2));
    assign(mod.running_var, around(1, 0.5));
  }
}

/** Runs the model on the GPU in eval mode and the float64 reference on its weights; returns both logits. */
async function forwardBoth(m: Module, name: string, stem: Stem, size: number) {
  randomizeBatchNorm(m, 7);
  m.eval();
  const image = randArray(rng(11), 3 * size * size);
  const out = noGrad(() => tidy(() => m.call(fromArray(image, [1, 3, size, size]))));
  const shape = [...out.shape];
  const actual = await out.dataAndDispose();
  const sd = new Map<string, Float32Array>();
  for (const [n, t] of m.stateTensors()) sd.set(n, await t.data());
  return { shape, actual, expected: referenceForward(name, stem, sd, image, size) };
}

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((a, b) => Math.max(a, Math.abs(b)), 0);

describe('architectures: CIFAR forward passes (1x3x32x32, 100 classes) equal a float64 reference', () => {
  for (const name of MODEL_NAMES) {
    it(name, async () => {
      setInitSeed(3);
      const m = createModel(name, { numClasses: 100 });
      try {
        const { shape, actual, expected } = await forwardBoth(m, name, 'cifar', 32);
        expect(shape).toEqual([1, 100]);
        // float32 accumulation over up to 50 layers (seen: 1.1e-6 of the largest logit at most).
        expectClose(actual, expected, 2e-5 * maxAbs(expected), 1e-4, name);
      } finally {
        m.dispose();
      }
    });
  }
});

describe('architectures: ImageNet-style forward passes (100 classes) equal a float64 reference', () => {
  // ResNet at 64x64: 7x7 stride-2 stem, padded max pool, layer4 at 2x2, global average pooling.
  // VGG at 64x64: features end at 2x2, pooled to 7x7 in uneven, overlapping bins (head at TEST_HIDDEN width).
  for (const [name, size] of [['resnet18', 64], ['resnet50', 64], ['vgg11_bn', 64]] as const) {
    it(`${name} on 1x3x${size}x${size}`, async () => {
      setInitSeed(5);
      const m = build(name, 'imagenet', 100);
      try {
        const { shape, actual, expected } = await forwardBoth(m, name, 'imagenet', size);
        expect(shape).toEqual([1, 100]);
        expectClose(actual, expected, 2e-5 * maxAbs(expected), 1e-4, name);
      } finally {
        m.dispose();
      }
    });
  }
});
