/**
 * CHIP importance (Sui et al., NeurIPS 2021): the drop of the nuclear norm of each conv output map when
 * channel c is zeroed, averaged over samples and batches.
 */
import * as ag from '../tensor/autograd.js';
import { ArgumentError, UnsupportedError } from '../errors.js';
import { Conv2d } from '../nn/layers.js';
import { addForwardHook, type Module } from '../nn/module.js';
import { tidy, type Tensor } from '../tensor/tensor.js';
import { symmetricEigenvalues } from './eigen.js';
import type { Group } from './groups.js';
import { calibrationBatches, type ImportanceOptions } from './calibration.js';

function nuclearFromGram(g: Float64Array, d: number): number {
  return symmetricEigenvalues(g, d).reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
}

/** CHIP scores of one feature map A (C x HW): ||A||_* - ||A with row c zeroed||_* for every c. */
export function chipScores(A: Float32Array, C: number, HW: number): Float64Array {
  const out = new Float64Array(C);
  if (HW <= C) {
    // Gram over pixels (HW x HW); zeroing row c subtracts a_c a_c^T.
    const g = new Float64Array(HW * HW);
    for (let c = 0; c < C; c++) for (let p = 0; p < HW; p++) for (let q = 0; q < HW; q++) g[p * HW + q] += A[c * HW + p] * A[c * HW + q];
    const full = nuclearFromGram(g, HW);
    const gc = new Float64Array(HW * HW);
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < HW; p++) for (let q = 0; q < HW; q++) gc[p * HW + q] = g[p * HW + q] - A[c * HW + p] * A[c * HW + q];
      out[c] = full - nuclearFromGram(gc, HW);
    }
  } else {
    // Gram over channels (C x C); zeroing row c removes row and column c.
    const g = new Float64Array(C * C);
    for (let p = 0; p < C; p++) for (let q = p; q < C; q++) {
      let s = 0;
      for (let i = 0; i < HW; i++) s += A[p * HW + i] * A[q * HW + i];
      g[p * C + q] = g[q * C + p] = s;
    }
    const full = nuclearFromGram(g, C);
    const sub = new Float64Array((C - 1) * (C - 1));
    for (let c = 0; c < C; c++) {
      let w = 0;
      for (let p = 0; p < C; p++) {
        if (p === c) continue;
        for (let q = 0; q < C; q++) if (q !== c) sub[w++] = g[p * C + q];
      }
      out[c] = full - nuclearFromGram(sub, C - 1);
    }
  }
  return out;
}

/** Per-slot CHIP score vectors (one per conv producer slot of the group), to be reduced like the other criteria's. */
export async function chipImportance(model: Module, group: Group, o: ImportanceOptions): Promise<Float64Array[]> {
  if (!o.data) throw new ArgumentError('The chip criterion needs training data (feature maps of training batches).');
  const slots = group.outSlots.filter((s) => s.layer instanceof Conv2d);
  const convs = [...new Set(slots.map((s) => s.layer as Conv2d))];
  if (!convs.length) throw new UnsupportedError('chip: the group has no convolution whose feature maps could be scored.');
  const n = group.channels;
  const full = convs.map((c) => new Float64Array(c.outChannels));
  const captured: { layer: number; t: Tensor }[] = [];
  const remove = addForwardHook((m, _x, y) => {
    const i = convs.indexOf(m as Conv2d);
    if (i >= 0) captured.push({ layer: i, t: y });
  });
  const wasTraining = model.training;
  model.eval();
  let batches = 0;
  try {
    for await (const { x } of calibrationBatches(o.data, o)) {
      batches++;
      captured.length = 0;
      const maps = ag.noGrad(() => tidy(() => {
        model.call(x);
        return captured.map((c) => c.t);
      }));
      x.dispose();
      const layersOfMaps = captured.map((c) => c.layer);
      for (let m = 0; m < maps.length; m++) {
        const [N, C, H, W] = maps[m].shape;
        const values = await maps[m].dataAndDispose();
        const batchMean = new Float64Array(C);
        for (let s = 0; s < N; s++) {
          const sc = chipScores(values.subarray(s * C * H * W, (s + 1) * C * H * W), C, H * W);
          for (let c = 0; c < C; c++) batchMean[c] += sc[c] / N;
        }
        // Mean over samples, then over batches.
        for (let c = 0; c < C; c++) full[layersOfMaps[m]][c] += batchMean[c];
      }
    }
  } finally {
    remove();
    model.train(wasTraining);
  }
  // Each slot reads its conv's channels [offset, offset + n).
  return slots.map((s) => full[convs.indexOf(s.layer as Conv2d)].slice(s.offset, s.offset + n).map((x) => x / batches));
}
