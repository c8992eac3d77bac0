/**
 * Entropic OT by log-domain Sinkhorn on the GPU (sinkhorn.wgsl), many problems in one dispatch
 * (`OptimalTransport.maps` takes a list). prune() in its sequential groupIdxs mode passes one problem
 * per group, in sequence, since each group's features depend on the groups pruned before it.
 * Results follow POT's `sinkhorn_log` run to convergence; float32 limits the reachable marginal error
 * (tol), so every result says whether it converged and the error it reached.
 */
import { GpuError } from '../tensor/device.js';
import { getRuntime } from '../tensor/tensor.js';
import source from '../kernels/wgsl/sinkhorn.wgsl';
import { OtError } from './emd.js';

export interface SinkhornProblem {
  a: ArrayLike<number>;
  b: ArrayLike<number>;
  /** n x k, row-major. */
  cost: ArrayLike<number>;
  reg: number;
}

export interface SinkhornOptions {
  /** Maximum iterations per problem (default 10000). */
  maxIter?: number;
  /** Stop when the L2 norm of the column-marginal violation falls below this (default 1e-7). */
  tol?: number;
}

export interface SinkhornResult {
  plan: Float64Array;
  iterations: number;
  /** Marginal violation at the last check. */
  error: number;
  converged: boolean;
}

const PROBLEM_WORDS = 12;

/** Log-domain entropic OT for a batch of problems in one GPU dispatch (one workgroup per problem). */
export async function sinkhornBatch(problems: SinkhornProblem[], o: SinkhornOptions = {}): Promise<SinkhornResult[]> {
  if (!problems.length) return [];
  const maxIter = o.maxIter ?? 10000;
  const tol = o.tol ?? 1e-7;
  const rt = getRuntime();
  let dataLen = 0;
  let stateLen = 0;
  const layout = problems.map((p, idx) => {
    const n = p.a.length;
    const k = p.b.length;
    if (p.cost.length !== n * k) throw new OtError(`sinkhorn problem ${idx}: cost has ${p.cost.length} entries, expected ${n} x ${k}.`);
    if (!(p.reg > 0)) throw new OtError(`sinkhorn problem ${idx}: reg must be positive, got ${p.reg}.`);
    for (const [name, m] of [['a', p.a], ['b', p.b]] as const) {
      for (let i = 0; i < m.length; i++) if (!(m[i] > 0)) throw new OtError(`sinkhorn problem ${idx}: ${name}[${i}] = ${m[i]}; log-domain Sinkhorn needs positive masses.`);
    }
    const entry = { n, k, cost: dataLen, loga: dataLen + n * k, logb: dataLen + n * k + n, u: stateLen, v: stateLen + n, plan: stateLen + n + k };
    dataLen += n * k + n + k;
    stateLen += n + k + n * k;
    return entry;
  });
  const desc = new ArrayBuffer(problems.length * PROBLEM_WORDS * 4);
  const du = new Uint32Array(desc);
  const df = new Float32Array(desc);
  const data = new Float32Array(dataLen);
  layout.forEach((e, idx) => {
    const p = problems[idx];
    const w = idx * PROBLEM_WORDS;
    du.set([e.n, e.k, e.cost, e.loga, e.logb, e.u, e.v, e.plan], w);
    df[w + 8] = 1 / p.reg;
    df[w + 9] = tol;
    du[w + 10] = maxIter;
    data.set(Float32Array.from(p.cost), e.cost);
    data.set(Float32Array.from(p.a, Math.log), e.loga);
    data.set(Float32Array.from(p.b, Math.log), e.logb);
  });
  const limit = rt.device.limits.maxStorageBufferBindingSize;
  if (data.byteLength > limit || stateLen * 4 > limit) throw new GpuError(`sinkhorn: the batch needs more than one storage buffer (${limit} bytes) holds.`);
  const descBuf = rt.acquire(desc.byteLength);
  const dataBuf = rt.acquire(data.byteLength);
  const stateBuf = rt.acquire(stateLen * 4);
  const reportBuf = rt.acquire(problems.length * 8);
  try {
    rt.write(descBuf, new Uint32Array(desc));
    rt.write(dataBuf, data);
    rt.dispatch(
      { name: 'sinkhorn', code: source, entryPoint: 'solve' },
      [
        { buffer: descBuf, kind: 'read' },
        { buffer: dataBuf, kind: 'read' },
        { buffer: stateBuf, kind: 'write' },
        { buffer: reportBuf, kind: 'write' },
      ],
      null,
      [problems.length],
    );
    const state = new Float32Array(await rt.read(stateBuf, stateLen * 4));
    const report = new Float32Array(await rt.read(reportBuf, problems.length * 8));
    return layout.map((e, idx) => {
      const error = report[idx * 2 + 1];
      return {
        plan: Float64Array.from(state.subarray(e.plan, e.plan + e.n * e.k)),
        iterations: report[idx * 2],
        error,
        converged: error < tol,
      };
    });
  } finally {
    for (const b of [descBuf, dataBuf, stateBuf, reportBuf]) rt.release(b);
  }
}
