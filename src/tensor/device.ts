/// <reference types="@webgpu/types" preserve="true" /> // the GPU* types in the published declarations
/**
 * GPU device acquisition for Node (Dawn through the npm package `webgpu`) and browsers (navigator.gpu).
 *
 * `gpuId` follows the experiment CLI's `--gpu_id`:
 *   -1  the software / fallback adapter (forceFallbackAdapter),
 *    0  the default adapter (high-performance preference),
 *    1  the low-power adapter.
 * WebGPU exposes no adapter enumeration, so these are the only choices it can honour.
 */

import { ArgumentError, GpuError } from '../errors.js';

export { GpuError };

export interface DeviceInfo {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** A human-readable description of the adapter ("vendor / architecture / device / description"). */
  description: string;
  isFallback: boolean;
  /** Subgroup operations are enabled and every subgroup has at least 8 lanes (the GEMM kernels' fast path). */
  subgroups: boolean;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

const NO_ADAPTER_HELP =
  'No WebGPU adapter was found. On Linux without a GPU, install Mesa lavapipe (software Vulkan) from Debian ' +
  "bookworm-backports:\n  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list\n" +
  '  apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1\n' +
  '(the bookworm Mesa 22 is too old for Dawn). In a browser, enable WebGPU (Chromium: --enable-unsafe-webgpu).';

let nodeGpu: GPU | undefined;

/** How long a wait for the GPU polls Dawn back to back before it polls once a millisecond. */
const EAGER_POLL_MS = 0.5;
let pollingPaced = false;
/** Runtime waits (readbacks, sync) in flight: Dawn's polls are paced only while one is. */
let waiting = 0;
let waitStart = 0;

/**
 * Runs a wait for the GPU (a readback's mapAsync, onSubmittedWorkDone) with Dawn's polling paced, where
 * paceDawnPolling is installed; elsewhere it is just the promise.
 */
export async function gpuWait<T>(done: Promise<T>): Promise<T> {
  if (waiting++ === 0) waitStart = performance.now();
  try {
    return await done;
  } finally {
    waiting--;
  }
}

/**
 * Dawn's Node binding waits for GPU work (mapAsync, onSubmittedWorkDone) by rescheduling a native
 * callback with setImmediate for as long as a wait is pending: a busy loop on the JavaScript thread. On
 * a CPU-backed adapter (lavapipe) the GPU is the CPU's cores, and that loop takes one from the kernels
 * it waits for (measured on 2 cores: the OT cost kernel of a 512-channel VGG group took 61-73 ms with
 * it, 41-43 ms without). Paced: while the runtime waits (gpuWait), after the wait's first
 * EAGER_POLL_MS, Dawn's callback runs once a millisecond (setTimeout) instead of at once. Dawn's
 * callback is told apart as native, nameless and without parameters: promise resolvers (one
 * parameter), bound functions ("bound f") and builtins (named) run as before, and so does every call
 * outside a runtime wait. clearImmediate takes the timers this returns. Installed once, for software
 * adapters only.
 */
function paceDawnPolling(): void {
  if (pollingPaced) return;
  pollingPaced = true;
  type Immediate = (cb: (...a: unknown[]) => void, ...args: unknown[]) => unknown;
  const g = globalThis as unknown as { setImmediate: Immediate; clearImmediate: (h: unknown) => void };
  const immediate = g.setImmediate;
  const clearImmediate = g.clearImmediate;
  const timeout = setTimeout;
  const clearTimer = clearTimeout;
  const timers = new WeakSet<object>();
  const nativeSource = /\{\s*\[native code\]\s*\}\s*$/;
  const isDawnPoll = (cb: unknown) =>
    typeof cb === 'function' && cb.name === '' && cb.length === 0 && nativeSource.test(Function.prototype.toString.call(cb));
  const paced: Immediate = function paced(cb, ...args) {
    if (waiting === 0 || performance.now() - waitStart < EAGER_POLL_MS || !isDawnPoll(cb)) return immediate(cb, ...args);
    const t = timeout(cb, 1, ...args);
    timers.add(t);
    return t;
  };
  // util.promisify(setImmediate) and friends read symbol-keyed properties.
  for (const key of Object.getOwnPropertySymbols(immediate)) (paced as unknown as Record<symbol, unknown>)[key] = (immediate as unknown as Record<symbol, unknown>)[key];
  g.setImmediate = paced;
  g.clearImmediate = (h: unknown) => (h !== null && typeof h === 'object' && timers.has(h) ? clearTimer(h as ReturnType<typeof setTimeout>) : clearImmediate(h));
}

/** Returns `navigator.gpu` in a browser; in Node, Dawn's GPU object (created once per process). */
export async function getGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode) throw new GpuError('This browser does not expose navigator.gpu (WebGPU). ' + NO_ADAPTER_HELP);
  if (!nodeGpu) {
    // A variable specifier keeps browser bundlers from trying to resolve the Node-only package.
    const pkg = 'webgpu';
    let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = await import(/* @vite-ignore */ pkg);
    } catch (e) {
      throw new GpuError(`Cannot load the Node WebGPU package "webgpu" (Dawn): ${(e as Error).message}. Run npm install.`);
    }
    // Dawn's constants (GPUBufferUsage, GPUMapMode, ...) are not globals in Node until installed.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    nodeGpu = mod.create([]);
  }
  return nodeGpu;
}

/** The requestAdapter() options for a `gpu_id`: -1 fallback, 0 high-performance, 1 low-power. */
export function adapterOptionsFor(gpuId: number): GPURequestAdapterOptions {
  if (!Number.isInteger(gpuId) || gpuId < -1 || gpuId > 1) {
    throw new ArgumentError(
      `gpu_id must be -1 (software/fallback adapter), 0 (default adapter) or 1 (low-power adapter); got ${gpuId}. ` +
        'WebGPU does not enumerate adapters, so no other index can be honoured.',
    );
  }
  if (gpuId === -1) return { forceFallbackAdapter: true };
  return { powerPreference: gpuId === 0 ? 'high-performance' : 'low-power' };
}

function describe(adapter: GPUAdapter): string {
  const info = adapter.info;
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s && s.length > 0);
  return parts.length ? parts.join(' / ') : 'unknown adapter';
}

/**
 * Requests an adapter and a device with the adapter's full storage-buffer limits.
 * Uncaptured validation errors and device loss are recorded and raised by the runtime as exceptions.
 */
export async function requestDevice(gpuId = 0): Promise<DeviceInfo> {
  const gpu = await getGpu();
  const options = adapterOptionsFor(gpuId);
  let adapter = await gpu.requestAdapter(options);
  if (!adapter && gpuId === -1) {
    // Some implementations (Dawn on lavapipe) only have a software adapter and report it as the default one.
    const fallbackCandidate = await gpu.requestAdapter();
    if (fallbackCandidate?.info?.isFallbackAdapter) adapter = fallbackCandidate;
  }
  if (!adapter) {
    throw new GpuError(gpuId === -1 ? 'No software/fallback WebGPU adapter is available. ' + NO_ADAPTER_HELP : NO_ADAPTER_HELP);
  }
  const want = (name: keyof GPUSupportedLimits) => adapter!.limits[name] as number;
  const minSubgroup = (adapter.info as GPUAdapterInfo & { subgroupMinSize?: number }).subgroupMinSize ?? 0;
  const subgroups = adapter.features.has('subgroups') && minSubgroup >= 8;
  const device = await adapter.requestDevice({
    requiredFeatures: subgroups ? ['subgroups' as GPUFeatureName] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: want('maxStorageBufferBindingSize'),
      maxBufferSize: want('maxBufferSize'),
      maxComputeWorkgroupStorageSize: want('maxComputeWorkgroupStorageSize'),
      maxComputeInvocationsPerWorkgroup: want('maxComputeInvocationsPerWorkgroup'),
      maxStorageBuffersPerShaderStage: want('maxStorageBuffersPerShaderStage'),
      maxComputeWorkgroupsPerDimension: want('maxComputeWorkgroupsPerDimension'),
    },
  });
  if (isNode && adapter.info?.isFallbackAdapter) paceDawnPolling();
  return {
    device,
    adapter,
    description: describe(adapter),
    // What the adapter says of itself, whatever was asked for (Dawn on lavapipe: true for 0 and -1 alike).
    isFallback: !!adapter.info?.isFallbackAdapter,
    subgroups,
  };
}
