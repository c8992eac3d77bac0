/** The adapter choice by gpu_id, what the adapter says of itself, and shader compile errors by cause. */
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ArgumentError, GpuError } from '../src/errors.js';
import { adapterOptionsFor } from '../src/tensor/device.js';
import { Runtime } from '../src/tensor/runtime.js';
import { deviceFeatures, lpCost } from '../src/kernels/prune.js';
import { destroyRuntime, fromArray, initRuntime } from '../src/tensor/tensor.js';

const runtimes: Runtime[] = [];
afterAll(() => runtimes.forEach((rt) => rt.destroy()));

describe('adapters', () => {
  it('isFallback is what the adapter reports, and gpu_id -1 only accepts a fallback adapter', async () => {
    for (const id of [-1, 0]) {
      const rt = await Runtime.create(id);
      runtimes.push(rt);
      const says = (rt.adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter;
      console.log(`gpu_id ${id}: ${rt.adapterDescription}; adapter.info.isFallbackAdapter = ${says}`);
      expect(typeof says).toBe('boolean');
      expect(rt.isFallback).toBe(says);
      if (id === -1) expect(rt.isFallback).toBe(true);
    }
  });

  it('a gpu_id outside -1..1 is an argument error', () => {
    expect(() => adapterOptionsFor(3)).toThrow(ArgumentError);
    expect(() => adapterOptionsFor(0.5)).toThrow(/gpu_id must be -1 \(software\/fallback adapter\), 0 \(default adapter\) or 1/);
  });
});

describe('shader compile errors', () => {
  it('are reported by cause (the kernel that failed to compile), not as a follow-on invalid pipeline', async () => {
    const rt = await Runtime.create(0);
    runtimes.push(rt);
    const buf = rt.acquire(16);
    rt.dispatch({ name: 'broken', code: '@compute @workgroup_size(1) fn main() { let x: f32 = undefined_name; }', entryPoint: 'main' }, [{ buffer: buf, kind: 'write' }], null, [1]);
    const error = await rt.sync().then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(GpuError);
    expect((error as Error).message).toMatch(/^Kernel broken:main failed to compile: .*undefined_name/s);
    rt.release(buf);
  });
});

describe('waiting for a software adapter', () => {
  it('polls Dawn about once a millisecond instead of in a busy loop (which takes a core from lavapipe); other setImmediate callbacks run as before', async () => {
    const rt = await initRuntime(0);
    try {
      const paced = globalThis.setImmediate;
      if (!rt.isFallback) {
        expect(paced.name).not.toBe('paced'); // hardware adapters keep Dawn's own polling
        return;
      }
      const args = await new Promise((resolve) => setImmediate((...a: unknown[]) => resolve(a), 1, 'two'));
      expect(args).toEqual([1, 'two']);
      expect(await promisify(setImmediate)('value')).toBe('value');
      // Outside the runtime's waits even Dawn's kind of callback (native, nameless, no parameters) runs at once.
      expect((setImmediate(Function.prototype as () => void) as object).constructor.name).toBe('Immediate');
      // A GPU job of tens of milliseconds (the transport cost of 256 x 128 channels over 4096 features).
      const n = 256;
      const w = fromArray(Float32Array.from({ length: n * 4096 }, (_, i) => Math.sin(i)), [n * 4096]);
      const f = deviceFeatures(n, [{ tensor: w, rows: 1, inner: 4096 }]);
      await rt.sync();
      let nativePolls = 0;
      globalThis.setImmediate = ((cb: (...a: unknown[]) => void, ...a: unknown[]) => {
        if (/\[native code\]/.test(Function.prototype.toString.call(cb))) nativePolls++;
        return paced(cb, ...a);
      }) as typeof setImmediate;
      let ms = 0;
      try {
        const t0 = performance.now();
        for (let rep = 0; rep < 3; rep++) lpCost(f, Array.from({ length: 128 }, (_, j) => 2 * j), 1).dispose();
        await rt.sync();
        ms = performance.now() - t0;
      } finally {
        globalThis.setImmediate = paced;
        f.XT.dispose();
        w.dispose();
      }
      console.log(`a ${ms.toFixed(0)} ms wait polled Dawn ${nativePolls} times`);
      // Inside a wait, past its eager start: other native callbacks (a promise's resolve, a bound
      // function) still get an Immediate; a nameless native one without parameters (Dawn's kind) a timer,
      // which clearImmediate cancels without upsetting the immediates queued after it.
      const w2 = fromArray(Float32Array.from({ length: n * 4096 }, (_, i) => Math.cos(i)), [n * 4096]);
      const f2 = deviceFeatures(n, [{ tensor: w2, rows: 1, inner: 4096 }]);
      for (let rep = 0; rep < 3; rep++) lpCost(f2, Array.from({ length: 128 }, (_, j) => 2 * j), 1).dispose();
      const pending = rt.sync();
      await new Promise((resolve) => setTimeout(resolve, 2));
      let resolveIt: (v: unknown) => void = () => {};
      const resolved = new Promise((resolve) => (resolveIt = resolve));
      const handles = [resolveIt, Math.max.bind(null), Function.prototype].map((cb) => setImmediate(cb as () => void));
      const kinds = handles.map((h) => (h as object).constructor.name);
      // Node's own clearImmediate given a pending timer corrupts its immediate queue (later ones never run).
      clearImmediate(handles[2]);
      await pending;
      await resolved;
      let later = false;
      await new Promise((resolve) => {
        setImmediate(() => (later = true));
        setTimeout(resolve, 20);
      });
      f2.XT.dispose();
      w2.dispose();
      expect(kinds).toEqual(['Immediate', 'Immediate', 'Timeout']);
      expect(later).toBe(true);
      expect(ms).toBeGreaterThan(10);
      // Back-to-back polls (each a few microseconds) would be thousands; paced: the first 0.5 ms, then one a millisecond.
      expect(nativePolls).toBeLessThan(100 + 2 * ms);
    } finally {
      destroyRuntime();
    }
  });
});
