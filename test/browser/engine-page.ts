/**
 * Runs in the browser test page: the same engine code as Node, on navigator.gpu. Checks a few kernels
 * (forward and backward through autograd) against the float64 references and reports to the test.
 */
import * as ag from '../../src/tensor/autograd.js';
import { matmul } from '../../src/kernels/gemm.js';
import { fromArray, getRuntime, initRuntime, tidy } from '../../src/tensor/tensor.js';
import { convOut, randArray, type ConvShape, refConv, refCrossEntropy, refMatmul, rng } from '../reference.js';

interface Check { name: string; maxError: number; ok: boolean }

function compare(name: string, got: Float32Array, want: ArrayLike<number>, atol: number, rtol: number): Check {
  let maxError = 0;
  let ok = got.length === want.length;
  for (let i = 0; i < want.length; i++) {
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
  ];
  for (const s of convs) {
    const [OH, OW] = convOut(s);
    const groups = s.groups ?? 1, wShape = [s.O, s.C / groups, s.KH, s.KW];
    const x = randArray(r, s.N * s.C * s.H * s.W), w = randArray(r, wShape.reduce((a, b) => a * b)), bias = randArray(r, s.O), dy = randArray(r, s.N * s.O * OH * OW);
    const X = fromArray(x, [s.N, s.C, s.H, s.W]).keep(), W = fromArray(w, wShape).keep();
    X.requiresGrad = true;
    W.requiresGrad = true;
    const y = tidy(() => {
      const y = ag.conv2d(X, W, fromArray(bias, [s.O]), { stride: s.stride, padding: s.pad, groups });
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
