/**
 * Runs in the browser test page: the same engine code as Node, on navigator.gpu. Checks a few kernels
 * (forward and backward through autograd) against the float64 references and reports to the test.
 */
import * as ag from '../../src/tensor/autograd.js';
import { matmul } from '../../src/kernels/gemm.js';
import { fromArray, getRuntime, initRuntime, tidy } from '../../src/tensor/tensor.js';
import { convOut, randArray, type ConvShape, REF_ACTIVATIONS, refConcat, refConv, refCrossEntropy, refMatmul, refPool, rng } from '../reference.js';

interface Check { name: string; maxError: number; ok: boolean }

function compare(name: string, got: Float32Array, want: ArrayLike<number>, atol: number, rtol: number): Check {
  let maxError = 0;
  let ok = got.length === want.length;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) || got[i] === want[i]) {
      if (!Number.isNaN(got[i]) && Number.isNaN(want[i])) ok = false; // PyTorch keeps this NaN
      continue;
    }
    const err = Math.abs(got[i] - want[i]);
    maxError = Math.max(maxError, err);
    if (!(err <= atol + rtol * Math.abs(want[i]))) ok = false;
  }
  return { name, maxError, ok };
}

async function runChecks(): Promise<{ adapter: string; subgroups: boolean; checks: Check[] }> {
  await initRuntime(0);
  const rt = getRuntime();
  const r = rng(5);
  const checks: Check[] = [];

  for (const [M, K, N] of [[17, 33, 65], [64, 48, 96], [5, 130, 7]]) {
    const a = randArray(r, M * K), b = randArray(r, K * N);
    const got = await tidy(() => matmul(fromArray(a, [M, K]), fromArray(b, [K, N]))).dataAndDispose();
    checks.push(compare(`matmul ${M}x${K}x${N}`, got, refMatmul(a, b, M, K, N), 1e-5, 1e-4));
  }

  // 3x3 stride 1 and 2; the ImageNet stem (7x7 stride 2 padding 3, more than 32 taps); a depthwise conv.
  const convs: ConvShape[] = [
    { N: 2, C: 3, H: 8, W: 8, O: 4, KH: 3, KW: 3, stride: 1, pad: 1 }, { N: 1, C: 5, H: 7, W: 9, O: 6, KH: 3, KW: 3, stride: 2, pad: 1 },
    { N: 1, C: 3, H: 11, W: 9, O: 5, KH: 7, KW: 7, stride: 2, pad: 3 }, { N: 2, C: 6, H: 6, W: 5, O: 6, KH: 3, KW: 3, stride: 1, pad: 1, groups: 6 },
    // Inception's 1x7 with asymmetric pads, width-dilated, 2 groups.
    { N: 1, C: 4, H: 6, W: 9, O: 6, KH: 1, KW: 7, stride: 1, pad: 0, pads: [0, 3, 0, 2], dil: [1, 2], groups: 2 },
  ];
  for (const s of convs) {
    const [OH, OW] = convOut(s);
    const groups = s.groups ?? 1, wShape = [s.O, s.C / groups, s.KH, s.KW];
    const x = randArray(r, s.N * s.C * s.H * s.W), w = randArray(r, wShape.reduce((a, b) => a * b)), bias = randArray(r, s.O), dy = randArray(r, s.N * s.O * OH * OW);
    const X = fromArray(x, [s.N, s.C, s.H, s.W]).keep(), W = fromArray(w, wShape).keep();
    X.requiresGrad = true;
    W.requiresGrad = true;
    const y = tidy(() => {
      const y = ag.conv2d(X, W, fromArray(bias, [s.O]), { stride: [s.stride, s.strideW ?? s.stride], padding: s.pads ?? s.pad, dilation: s.dil ?? 1, groups });
      ag.backward(y, fromArray(dy, y.shape));
      return y;
    });
    const ref = refConv(s, x, w, bias, dy);
    const tag = `conv ${s.KH}x${s.KW} stride ${s.stride} groups ${groups}`;
    checks.push(compare(`${tag} y`, await y.dataAndDispose(), ref.y, 1e-5, 1e-4));
    checks.push(compare(`${tag} dx`, await X.grad!.data(), ref.dx, 1e-5, 1e-4));
    checks.push(compare(`${tag} dw`, await W.grad!.data(), ref.dw, 1e-4, 1e-4));
    [X.grad!, W.grad!, X, W].forEach((t) => t.dispose());
  }

  // Activations with PyTorch's semantics (NaN and the kinks planted), forward and gradient.
  const values = randArray(r, 64, 8);
  [NaN, -3, 3, 0, 6].forEach((v, i) => (values[i * 7] = v));
  for (const name of ['relu', 'hardSwish', 'hardSigmoid', 'sigmoid', 'silu'] as const) {
    const X = fromArray(values, [64]).keep();
    X.requiresGrad = true;
    const fn = { relu: ag.relu, hardSwish: ag.hardSwish, hardSigmoid: (t: typeof X) => ag.hardSigmoid(t), sigmoid: ag.sigmoid, silu: ag.silu }[name];
    const y = tidy(() => {
      const y = fn(X);
      ag.backward(y, fromArray(new Float32Array(64).fill(1), [64]));
      return y;
    });
    const { f, df } = REF_ACTIVATIONS[name];
    const [a, b] = name === 'hardSigmoid' ? [Math.fround(1 / 6), 0.5] : [0, 0];
    checks.push(compare(`${name} y`, await y.dataAndDispose(), Array.from(values, (v) => f(v, a, b)), 1e-6, 1e-5));
    checks.push(compare(`${name} dx`, await X.grad!.data(), Array.from(values, (v) => df(v, a, b)), 1e-6, 1e-5));
    [X.grad!, X].forEach((t) => t.dispose());
  }

  // Concat along channels, then GoogLeNet's MaxPool2d(3, 2, ceil_mode=True) and a ceil-mode avg pool.
  const p1 = randArray(r, 2 * 3 * 7 * 7), p2 = randArray(r, 2 * 2 * 7 * 7);
  const joined = refConcat([p1, p2], [[2, 3, 7, 7], [2, 2, 7, 7]], 1);
  for (const kind of ['max', 'avg'] as const) {
    const out = tidy(() => {
      const c = ag.concat([fromArray(p1, [2, 3, 7, 7]), fromArray(p2, [2, 2, 7, 7])]);
      const g = { kernel: 3, stride: 2, ceilMode: true, padding: kind === 'avg' ? 1 : 0 };
      return kind === 'max' ? ag.maxPool2d(c, g) : ag.avgPool2d(c, g);
    });
    const ref = refPool(kind, joined, [2, 5, 7, 7], 3, 2, new Float64Array(out.size), kind === 'avg' ? 1 : 0, true);
    checks.push(compare(`concat + ${kind}pool ceil_mode`, await out.dataAndDispose(), ref.y, 1e-6, 1e-5));
  }

  const B = 6, C = 10;
  const logits = randArray(r, B * C, 4), labels = Float32Array.from({ length: B }, (_, i) => (i * 3) % C);
  const L = fromArray(logits, [B, C]).keep();
  L.requiresGrad = true;
  const loss = tidy(() => {
    const loss = ag.crossEntropy(L, fromArray(labels, [B]));
    ag.backward(loss);
    return loss;
  });
  const ref = refCrossEntropy(logits, labels, B, C);
  checks.push(compare('cross-entropy loss', await loss.dataAndDispose(), [ref.loss], 1e-5, 1e-5));
  checks.push(compare('cross-entropy dlogits', await L.grad!.data(), ref.dlogits, 1e-6, 1e-4));
  await rt.sync();
  return { adapter: rt.adapterDescription, subgroups: rt.subgroups, checks };
}

(window as unknown as { runChecks: typeof runChecks }).runChecks = runChecks;
document.body.dataset.ready = 'true';
