/**
 * A float64 interpreter for the ONNX files the exporter writes for the acceptance models (Conv, Clip, Relu,
 * Add, GlobalAveragePool, Flatten, Reshape-to-2D, Gemm, Constant): the exact function a file describes, to
 * tell which of two float32 implementations (the engine, onnxruntime) is off when they disagree.
 * Any other op is an error: extend it when a test needs one.
 */
import { decodeModel, type Attribute, type Tensor } from '../src/onnx/proto.js';
import { refConv, refMatmul } from './reference.js';

interface Value { v: Float64Array; s: number[] }

function tensorValues(t: Tensor): Float64Array {
  if (t.float_data?.length) return Float64Array.from(t.float_data);
  const raw = t.raw_data ?? new Uint8Array();
  if (t.data_type !== 1) throw new Error(`onnx-reference: tensor "${t.name}" of data type ${t.data_type} (only float)`);
  return Float64Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
}

/** The first graph output of `bytes` on input `x` of `shape`, in float64. */
export function evaluateOnnxFloat64(bytes: Uint8Array, x: ArrayLike<number>, shape: number[]): Float64Array {
  const graph = decodeModel(bytes).graph!;
  const env = new Map<string, Value>();
  for (const t of graph.initializer ?? []) env.set(t.name!, { v: tensorValues(t), s: t.dims ?? [] });
  env.set(graph.input![0].name, { v: Float64Array.from(x), s: shape });
  for (const node of graph.node ?? []) {
    const attr = (name: string): Attribute | undefined => node.attribute?.find((a) => a.name === name);
    const [a, b, c] = (node.input ?? []).map((name) => (name ? env.get(name) : undefined));
    let out: Value;
    switch (node.op_type) {
      case 'Constant': {
        const t = attr('value')!.t!;
        out = { v: tensorValues(t), s: t.dims ?? [] };
        break;
      }
      case 'Conv': {
        const [N, C, H, W] = a!.s;
        const [O, , KH, KW] = b!.s;
        const [pt, pl, pb, pr] = attr('pads')?.ints ?? [0, 0, 0, 0];
        const [sh, sw] = attr('strides')?.ints ?? [1, 1];
        const [dh, dw] = attr('dilations')?.ints ?? [1, 1];
        const groups = attr('group')?.i ?? 1;
        const { y } = refConv({ N, C, H, W, O, KH, KW, stride: sh, strideW: sw, pad: 0, pads: [pt, pl, pb, pr], dil: [dh, dw], groups }, a!.v, b!.v, c ? c.v : null);
        out = { v: y, s: [N, O, Math.floor((H + pt + pb - dh * (KH - 1) - 1) / sh) + 1, Math.floor((W + pl + pr - dw * (KW - 1) - 1) / sw) + 1] };
        break;
      }
      case 'Clip': {
        const [lo, hi] = [b ? b.v[0] : -Infinity, c ? c.v[0] : Infinity];
        out = { v: a!.v.map((v) => Math.min(hi, Math.max(lo, v))), s: a!.s };
        break;
      }
      case 'Relu':
        out = { v: a!.v.map((v) => Math.max(0, v)), s: a!.s };
        break;
      case 'Add':
        if (a!.v.length !== b!.v.length) throw new Error('onnx-reference: Add with broadcasting');
        out = { v: a!.v.map((v, i) => v + b!.v[i]), s: a!.s };
        break;
      case 'GlobalAveragePool': {
        const [N, C, H, W] = a!.s;
        const v = new Float64Array(N * C);
        for (let i = 0; i < N * C; i++) for (let j = 0; j < H * W; j++) v[i] += a!.v[i * H * W + j] / (H * W);
        out = { v, s: [N, C, 1, 1] };
        break;
      }
      case 'Flatten':
      case 'Reshape':
        out = { v: a!.v, s: [a!.s[0], a!.s.slice(1).reduce((p, q) => p * q, 1)] };
        break;
      case 'Gemm': {
        const [M, K] = a!.s;
        const transB = (attr('transB')?.i ?? 0) === 1;
        const N = transB ? b!.s[0] : b!.s[1];
        const y = refMatmul(a!.v, b!.v, M, K, N, false, transB);
        const [alpha, beta] = [attr('alpha')?.f ?? 1, attr('beta')?.f ?? 1];
        for (let i = 0; i < M * N; i++) y[i] = alpha * y[i] + (c ? beta * c.v[i % N] : 0);
        out = { v: y, s: [M, N] };
        break;
      }
      default:
        throw new Error(`onnx-reference: op ${node.op_type} (node "${node.name}") is not interpreted`);
    }
    env.set(node.output![0], out);
  }
  return env.get(graph.output![0].name)!.v;
}
