/** The adapter choice by gpu_id, what the adapter says of itself, and shader compile errors by cause. */
import { afterAll, describe, expect, it } from 'vitest';
import { ArgumentError, GpuError } from '../src/errors.js';
import { adapterOptionsFor } from '../src/tensor/device.js';
import { Runtime } from '../src/tensor/runtime.js';

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
