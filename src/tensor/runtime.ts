/// <reference types="@webgpu/types" preserve="true" /> // the GPU* types in the published declarations
/**
 * The runtime: one GPU device, a buffer pool, a pipeline cache and a command batcher.
 *
 * Batching: dispatches are recorded into one open compute pass and submitted together on `flush()`
 * (before a readback, an upload, or when a batch grows large). Inside a compute pass every dispatch
 * is its own usage scope, so WebGPU orders a dispatch after the writes of the previous ones.
 *
 * Uniforms: each dispatch's small parameter block goes into a CPU arena at 256-byte offsets; the whole
 * arena is written to one uniform buffer with a single writeBuffer right before the batch is submitted.
 *
 * Buffer reuse: a released buffer goes back to the pool at once. That is safe because every later use
 * is either a dispatch recorded after the reads (ordered by the pass) or a queue.writeBuffer, and uploads
 * flush the pending batch first so a write can never overtake a pending read.
 */
import { GpuError, gpuWait, requestDevice, type DeviceInfo } from './device.js';
import { ArgumentError } from '../errors.js';

export type BindingKind = 'read' | 'write' | 'uniform';

export interface KernelSpec {
  /** Name used in error messages and the pipeline cache. */
  name: string;
  /** WGSL source of the whole kernel family. */
  code: string;
  entryPoint: string;
  /** Override constants, folded in at pipeline creation (tile sizes, modes, flags). */
  constants?: Record<string, number>;
}

const UNIFORM_ALIGN = 256;
const ARENA_BYTES = 64 * 1024;
const MAX_DISPATCHES_PER_BATCH = 256;

/** Pool size class: exact 256-byte steps up to 4 KiB, then quarter-power-of-two steps (at most 25% slack). */
export function poolSizeClass(bytes: number): number {
  const b = Math.max(bytes, 4);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const step = 2 ** Math.floor(Math.log2(b)) / 4;
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** GPU buffers created over the runtime's life (pool misses). */
  created: number;
  /** Buffers currently handed out. */
  inUse: number;
  /** Buffers waiting in the pool. */
  free: number;
  /** Bytes of all GPU buffers the pool owns (in use + free). */
  bytes: number;
}

/** One GPU device with its buffer pool, pipeline cache and command batcher (see initRuntime). */
export class Runtime {
  readonly device: GPUDevice;
  readonly adapterDescription: string;
  readonly isFallback: boolean;
  /**
   * Whether kernels use subgroup operations (the device has them with >= 8 lanes). Setting it false
   * forces the portable kernels, which tests use to cover both paths on one device.
   */
  subgroups: boolean;
  /** Held so the adapter (and in Node the Dawn instance behind it) outlives the device. */
  readonly adapter: GPUAdapter;

  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly stagingFree = new Map<number, GPUBuffer[]>();
  private stats = { created: 0, inUse: 0, bytes: 0 };
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly codeIds = new Map<string, number>();

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatchesInBatch = 0;
  private readonly arena = new ArrayBuffer(ARENA_BYTES);
  private arenaUsed = 0;
  private arenaBuffer: GPUBuffer | null = null;

  private pendingError: Error | null = null;
  private lost: string | null = null;

  /** Dispatches recorded since creation (for tests and benchmarks). */
  dispatchCount = 0;
  /** Queue submissions since creation. */
  submitCount = 0;

  constructor(info: DeviceInfo) {
    this.device = info.device;
    this.adapterDescription = info.description;
    this.isFallback = info.isFallback;
    this.subgroups = info.subgroups;
    this.adapter = info.adapter;
    this.device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.recordError(new GpuError(`WebGPU ${err.constructor?.name ?? 'error'}: ${err.message}`));
    });
    void this.device.lost.then((info) => {
      this.lost = `${info.reason}: ${info.message}`;
    });
  }

  static async create(gpuId = 0): Promise<Runtime> {
    return new Runtime(await requestDevice(gpuId));
  }

  /**
   * Keeps the first error, except that a root cause (a shader that failed to compile, reported
   * asynchronously by its error scope) replaces a follow-on "invalid due to a previous error".
   */
  private recordError(e: GpuError, rootCause = false): void {
    if (!this.pendingError || (rootCause && /invalid due to a previous error/.test(this.pendingError.message))) {
      this.pendingError = e;
    }
  }

  /** Throws the first uncaptured GPU error or a device loss, so failures surface at the next sync point. */
  checkErrors(): void {
    if (this.lost !== null) throw new GpuError(`The GPU device was lost (${this.lost}).`);
    if (this.pendingError) {
      const e = this.pendingError;
      this.pendingError = null;
      throw e;
    }
  }

  // ---------------------------------------------------------------- buffers

  acquire(bytes: number): GPUBuffer {
    const size = poolSizeClass(bytes);
    const list = this.free.get(size);
    this.stats.inUse++;
    const reused = list?.pop();
    if (reused) return reused;
    if (size > this.device.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        `A tensor of ${bytes} bytes exceeds this device's maxStorageBufferBindingSize (${this.device.limits.maxStorageBufferBindingSize}).`,
      );
    }
    this.stats.created++;
    this.stats.bytes += size;
    return this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  release(buffer: GPUBuffer): void {
    this.stats.inUse--;
    let list = this.free.get(buffer.size);
    if (!list) this.free.set(buffer.size, (list = []));
    list.push(buffer);
  }

  poolStats(): PoolStats {
    let free = 0;
    for (const l of this.free.values()) free += l.length;
    return { created: this.stats.created, inUse: this.stats.inUse, free, bytes: this.stats.bytes };
  }

  /** Destroys every pooled buffer that is not in use. */
  trimPool(): void {
    this.flush();
    for (const list of this.free.values()) {
      for (const b of list) {
        this.stats.bytes -= b.size;
        b.destroy();
      }
    }
    this.free.clear();
  }

  /** Uploads data into a buffer. Flushes first: the buffer may be one that a pending dispatch still reads. */
  write(buffer: GPUBuffer, data: Float32Array | Uint32Array | Int32Array, byteOffset = 0): void {
    this.flush();
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Records a GPU-side copy of `bytes` from one buffer to another (in order with the dispatches around it). */
  copy(src: GPUBuffer, dst: GPUBuffer, bytes: number): void {
    if (bytes <= 0 || this.shapesOnlyDepth > 0) return;
    if (src === dst) throw new ArgumentError('copy: source and destination are the same buffer.');
    if (this.lost !== null) this.checkErrors();
    this.endPass();
    this.ensureEncoder().copyBufferToBuffer(src, 0, dst, 0, Math.ceil(bytes / 4) * 4);
  }

  /** Copies `bytes` from a GPU buffer to the CPU. Submits everything pending first. */
  async read(buffer: GPUBuffer, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.checkErrors();
    const size = Math.ceil(bytes / 4) * 4;
    const cls = poolSizeClass(size);
    const staging =
      this.stagingFree.get(cls)?.pop() ??
      this.device.createBuffer({ size: cls, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.ensureEncoder().copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.flush();
    try {
      await gpuWait(staging.mapAsync(GPUMapMode.READ, 0, size));
    } catch (e) {
      this.checkErrors();
      throw new GpuError(`Reading a GPU buffer back failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange(0, size).slice(0, bytes);
    staging.unmap();
    let list = this.stagingFree.get(cls);
    if (!list) this.stagingFree.set(cls, (list = []));
    list.push(staging);
    this.checkErrors();
    return out;
  }

  // ---------------------------------------------------------------- dispatch

  private pipelineFor(spec: KernelSpec, kinds: BindingKind[]): GPUComputePipeline {
    const sig = kinds.join(',');
    const constKey = spec.constants ? JSON.stringify(spec.constants) : '';
    // Variants of one kernel family share a name but not their source, so the source is part of the key.
    let codeId = this.codeIds.get(spec.code);
    if (codeId === undefined) this.codeIds.set(spec.code, (codeId = this.codeIds.size));
    const key = `${spec.name}#${codeId}|${spec.entryPoint}|${sig}|${constKey}`;
    let pipeline = this.pipelines.get(key);
    if (pipeline) return pipeline;
    let layout = this.layouts.get(sig);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        entries: kinds.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(sig, layout);
    }
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: spec.code, label: spec.name });
    pipeline = this.device.createComputePipeline({
      label: `${spec.name}:${spec.entryPoint}`,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entryPoint, constants: spec.constants },
    });
    // Compilation errors come back asynchronously; record them so the next sync point throws.
    void this.device.popErrorScope().then((err) => {
      if (!err) return;
      this.pipelines.delete(key);
      this.recordError(new GpuError(`Kernel ${spec.name}:${spec.entryPoint} failed to compile: ${err.message}`), true);
    });
    this.pipelines.set(key, pipeline);
    return pipeline;
  }

  private ensureEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /**
   * Records one dispatch. `buffers` are bound in order as bindings 0..n-1 with the given kinds; if
   * `params` is given it becomes the last binding (a uniform block).
   */
  dispatch(
    spec: KernelSpec,
    buffers: { buffer: GPUBuffer; kind: Exclude<BindingKind, 'uniform'> }[],
    params: ArrayBuffer | null,
    workgroups: [number, number?, number?],
  ): void {
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0 || this.shapesOnlyDepth > 0) return;
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new GpuError(`${spec.name}: dispatch ${x}x${y}x${z} exceeds the ${maxWg} workgroups-per-dimension limit.`);
    }
    if (this.lost !== null) this.checkErrors();
    if (params && params.byteLength > UNIFORM_ALIGN) throw new GpuError(`${spec.name}: parameter block too large.`);
    if (this.dispatchesInBatch >= MAX_DISPATCHES_PER_BATCH || (params && this.arenaUsed + UNIFORM_ALIGN > ARENA_BYTES)) {
      this.flush();
    }
    const kinds: BindingKind[] = buffers.map((b) => b.kind);
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({ binding: i, resource: { buffer: b.buffer } }));
    if (params) {
      kinds.push('uniform');
      this.arenaBuffer ??= this.acquireUniformArena();
      new Uint8Array(this.arena, this.arenaUsed, params.byteLength).set(new Uint8Array(params));
      entries.push({
        binding: buffers.length,
        resource: { buffer: this.arenaBuffer, offset: this.arenaUsed, size: Math.max(16, Math.ceil(params.byteLength / 16) * 16) },
      });
      this.arenaUsed += UNIFORM_ALIGN;
    }
    const pipeline = this.pipelineFor(spec, kinds);
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    if (!this.pass) this.pass = this.ensureEncoder().beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatchesInBatch++;
    this.dispatchCount++;
  }

  private shapesOnlyDepth = 0;
  /**
   * Runs `fn` recording no GPU work: ops still make tensors of the right shapes (and autograd nodes), but
   * their contents are undefined. For passes whose values nobody reads up to some point (evaluating a
   * pruned model from kept activations, src/nn/resume.ts), or at all (the pruner's tracing).
   */
  shapesOnly<T>(fn: () => T): T {
    const was = this.shapesOnlyDepth;
    this.shapesOnlyDepth = was + 1;
    try {
      return fn();
    } finally {
      this.shapesOnlyDepth = was;
    }
  }

  /** Inside shapesOnly: records GPU work again from here until that shapesOnly call returns. */
  resumeDispatch(): void {
    this.shapesOnlyDepth = 0;
  }

  /** Inside shapesOnly (after resumeDispatch): records no GPU work again until that shapesOnly call returns. */
  suspendDispatch(): void {
    this.shapesOnlyDepth = 1;
  }

  private readonly dummies: GPUBuffer[] = [];
  /**
   * A small buffer reserved for binding slots an entry point does not use. Slot i is distinct from
   * every other, because two writable bindings of one dispatch must not alias.
   */
  dummy(i = 0): GPUBuffer {
    while (this.dummies.length <= i) {
      this.dummies.push(this.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }));
    }
    return this.dummies[i];
  }

  private uniformArenas: GPUBuffer[] = [];
  private acquireUniformArena(): GPUBuffer {
    return (
      this.uniformArenas.pop() ??
      this.device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
    );
  }

  /** Submits everything recorded so far. */
  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    if (this.arenaBuffer) {
      this.device.queue.writeBuffer(this.arenaBuffer, 0, this.arena, 0, this.arenaUsed);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.submitCount++;
    this.encoder = null;
    this.dispatchesInBatch = 0;
    this.arenaUsed = 0;
    // Safe to reuse at once: the next writeBuffer into it is queued after this submission.
    if (this.arenaBuffer) this.uniformArenas.push(this.arenaBuffer);
    this.arenaBuffer = null;
  }

  /** Waits until the GPU has finished all submitted work, then raises any recorded error. */
  async sync(): Promise<void> {
    this.flush();
    await gpuWait(this.device.queue.onSubmittedWorkDone());
    this.checkErrors();
  }

  destroy(): void {
    this.flush();
    this.trimPool();
    this.device.destroy();
  }
}

/** Workgroup counts for a 1-D kernel of `n` invocations, folded into y past the per-dimension limit. */
export function grid1d(n: number, workgroupSize = 256): [number, number] {
  const groups = Math.ceil(n / workgroupSize);
  if (groups <= 65535) return [groups, 1];
  const x = 65535;
  return [x, Math.ceil(groups / x)];
}

/** Builds a uniform parameter block from u32/i32/f32 fields, each 4 bytes, in WGSL struct order. */
export class Params {
  private readonly view = new DataView(new ArrayBuffer(UNIFORM_ALIGN));
  private offset = 0;
  u32(v: number): this {
    this.view.setUint32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  i32(v: number): this {
    this.view.setInt32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  f32(v: number): this {
    this.view.setFloat32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  build(): ArrayBuffer {
    return this.view.buffer.slice(0, Math.max(16, Math.ceil(this.offset / 16) * 16)) as ArrayBuffer;
  }
}
