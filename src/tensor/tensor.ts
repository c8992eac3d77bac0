/**
 * Float32 tensors on pooled GPU buffers, with scope-based lifetimes.
 *
 * JavaScript has no destructors, so every tensor is registered with the innermost `tidy` scope and
 * released to the buffer pool when that scope ends, unless it is returned from the scope or `keep()`-ed.
 * Parameters and other long-lived tensors are created kept and freed with `dispose()`.
 */
import { GpuError } from './device.js';
import { ArgumentError } from '../errors.js';
import { Runtime } from './runtime.js';

let runtime: Runtime | null = null;

/** Creates (once) the global runtime on the chosen adapter. See `adapterOptionsFor` for `gpuId`. */
export async function initRuntime(gpuId = 0): Promise<Runtime> {
  if (runtime) return runtime;
  runtime = await Runtime.create(gpuId);
  return runtime;
}

/** The runtime initRuntime() created; throws a GpuError before that. */
export function getRuntime(): Runtime {
  if (!runtime) throw new GpuError('The WebGPU runtime is not initialised: call `await initRuntime(gpuId)` first.');
  return runtime;
}

/** Tears the runtime down (tests, and the CLI on exit). */
export function destroyRuntime(): void {
  runtime?.destroy();
  runtime = null;
}

/** The recorded operation that produced a tensor; `backward` maps the output gradient to input gradients. */
export interface GradNode {
  op: string;
  inputs: Tensor[];
  backward: (gradOut: Tensor) => (Tensor | null)[];
  /** The op's geometry (pooling kernel, stride, padding) where the tensors alone do not tell it: read by exporters. */
  attrs?: Readonly<Record<string, number>>;
}

export type Shape = readonly number[];

/** Number of elements of a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ArgumentError(`Invalid shape [${shape.join(', ')}]: dimensions must be non-negative integers.`);
    n *= d;
  }
  return n;
}

const scopes: Set<Tensor>[] = [];

/** A pooled GPU buffer shared by a tensor and its reshaped views; released when the last one is disposed. */
class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer) {}
}

/** A float32 tensor on a pooled GPU buffer, freed by the enclosing tidy() unless kept. */
export class Tensor {
  readonly shape: Shape;
  readonly size: number;
  private storage: Storage | null;
  /** Set on leaves whose gradient `backward` should accumulate into `grad`. */
  requiresGrad = false;
  grad: Tensor | null = null;
  node: GradNode | null = null;
  private kept = false;

  /** Wraps a pooled buffer (or shares another tensor's); use the factories (`empty`, `fromArray`, ...). */
  constructor(shape: Shape, buffer: GPUBuffer | Tensor) {
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    if (buffer instanceof Tensor) {
      if (buffer.size !== this.size) throw new ArgumentError(`Cannot view [${buffer.shape}] as [${shape}]: sizes differ.`);
      this.storage = buffer.liveStorage();
      this.storage.refs++;
    } else {
      this.storage = new Storage(buffer);
    }
    scopes[scopes.length - 1]?.add(this);
  }

  private liveStorage(): Storage {
    if (!this.storage) throw new ArgumentError(`Use of a disposed tensor of shape [${this.shape.join(', ')}].`);
    return this.storage;
  }

  get buffer(): GPUBuffer {
    return this.liveStorage().buffer;
  }

  get disposed(): boolean {
    return this.storage === null;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Exempts this tensor from scope cleanup; it lives until `dispose()`. */
  keep(): this {
    this.kept = true;
    for (const s of scopes) s.delete(this);
    return this;
  }

  get isKept(): boolean {
    return this.kept;
  }

  dispose(): void {
    if (!this.storage) return;
    if (--this.storage.refs === 0) getRuntime().release(this.storage.buffer);
    this.storage = null;
    this.node = null;
    for (const s of scopes) s.delete(this);
  }

  /** Reads the values back to the CPU. */
  async data(): Promise<Float32Array> {
    return new Float32Array(await getRuntime().read(this.buffer, this.size * 4));
  }

  /** Reads back and disposes the tensor (for temporaries). */
  async dataAndDispose(): Promise<Float32Array> {
    try {
      return await this.data();
    } finally {
      this.dispose();
    }
  }

  toString(): string {
    return `Tensor[${this.shape.join('x')}]`;
  }
}

/** An uninitialised tensor (contents are whatever the pooled buffer held). */
export function empty(shape: Shape): Tensor {
  const n = sizeOf(shape);
  return new Tensor(shape, getRuntime().acquire(n * 4));
}

/** A new tensor of `shape` holding `values` (uploaded to the GPU). */
export function fromArray(values: ArrayLike<number>, shape: Shape): Tensor {
  const n = sizeOf(shape);
  if (values.length !== n) {
    throw new ArgumentError(`fromArray: ${values.length} values do not fill shape [${shape.join(', ')}] (${n} elements).`);
  }
  const t = empty(shape);
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  if (n > 0) getRuntime().write(t.buffer, data);
  return t;
}

/** A new tensor with `t`'s shape and values, copied on the GPU (nothing comes to the host). */
export function copyOf(t: Tensor): Tensor {
  const c = empty(t.shape);
  getRuntime().copy(t.buffer, c.buffer, t.size * 4);
  return c;
}

/** Overwrites `dst` with `src`'s values on the GPU (same number of elements). */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) throw new ArgumentError(`copyInto: ${src.size} values for a tensor of ${dst.size} elements.`);
  getRuntime().copy(src.buffer, dst.buffer, src.size * 4);
}

/** Overwrites a tensor's contents in place (same buffer, so references such as an optimiser's stay valid). */
export function assign(t: Tensor, values: ArrayLike<number>): void {
  if (values.length !== t.size) {
    throw new ArgumentError(`assign: ${values.length} values for a tensor of shape [${t.shape.join(', ')}] (${t.size} elements).`);
  }
  if (t.size > 0) getRuntime().write(t.buffer, values instanceof Float32Array ? values : Float32Array.from(values));
}

/**
 * Runs `fn` in a scope: every tensor created inside and not returned (directly, or inside an array or
 * plain object) or kept is disposed when it returns or throws.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new ArgumentError('tidy() takes a synchronous function; await outside the scope.');
  } catch (e) {
    for (const t of scope) t.dispose();
    throw e;
  } finally {
    scopes.pop();
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== 'object') return;
  if (value instanceof Tensor) {
    out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

export function assertShape(t: Tensor, rank: number, what: string): void {
  if (t.rank !== rank) throw new ArgumentError(`${what}: expected a rank-${rank} tensor, got shape [${t.shape.join(', ')}].`);
}
