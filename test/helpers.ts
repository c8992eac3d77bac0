/** Test helpers: the shared fixtures, a seeded RNG, float64 CPU references and tolerance checks. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { seededRandom } from '../src/nn/init.js';
import { AdaptiveAvgPool2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../src/nn/layers.js';
import { parseSafetensors, type SafeTensorsFile } from '../src/tensor/safetensors.js';
import { initRuntime } from '../src/tensor/tensor.js';

export * from './reference.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The shared folder: $INTRA_FUSION_SHARED, else ../shared beside the repository. */
export function sharedDir(): string {
  const dir = process.env.INTRA_FUSION_SHARED ?? resolve(here, '..', '..', 'shared');
  if (!existsSync(dir)) throw new Error(`Shared fixtures not found at ${dir}; set INTRA_FUSION_SHARED.`);
  return dir;
}

export interface FixtureCase {
  file: string;
  op: string;
  params: Record<string, unknown>;
  tensors: string[];
}

export function fixtureCases(op?: string): FixtureCase[] {
  const index = JSON.parse(readFileSync(join(sharedDir(), 'fixtures/ops/index.json'), 'utf8')) as { cases: FixtureCase[] };
  return index.cases.filter((c) => !op || c.op === op);
}

export function loadFixture(file: string): SafeTensorsFile {
  return parseSafetensors(readFileSync(join(sharedDir(), 'fixtures/ops', file)), file);
}

export async function gpu() {
  return initRuntime(Number(process.env.GPU_ID ?? 0));
}

/** Asserts |actual - expected| <= atol + rtol * |expected| elementwise, reporting the worst element. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, what = ''): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    // An expected NaN (PyTorch propagating one) must be NaN; an unexpected NaN always fails below.
    if (Number.isNaN(expected[i])) {
      if (!Number.isNaN(actual[i])) expect.fail(`${what}: element ${i} is ${actual[i]}, expected NaN`);
      continue;
    }
    if (actual[i] === expected[i]) continue; // also equal infinities, whose difference is NaN
    const err = Math.abs(actual[i] - expected[i]);
    const excess = err - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= worstExcess) || Number.isNaN(actual[i])) {
      worst = i;
      worstExcess = Number.isNaN(actual[i]) ? Infinity : excess;
    }
  }
  if (worst >= 0) {
    expect.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

/** max|a - b| / max|b|: the relative difference the ONNX and acceptance tests bound. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

/** The CLI tests' tiny CNN (three convs, 10 classes): small enough for run.js end to end on lavapipe. */
export function tinyCnn(): Sequential {
  return new Sequential(
    new Conv2d(3, 8, 3, 1, 1, true), new ReLU(), new Conv2d(8, 16, 3, 2, 1, true), new ReLU(),
    new Conv2d(16, 16, 3, 1, 1, true), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(16, 10),
  );
}

/** A CIFAR-10 folder in the official binary layout with `perFile` random records per file (seeded). */
export function writeRandomCifar(dir: string, perFile = 16, seed = 3): void {
  const r = seededRandom(seed);
  const batch = (n: number) => Uint8Array.from({ length: n * 3073 }, (_, i) => (i % 3073 === 0 ? Math.floor(r() * 10) : Math.floor(r() * 256)));
  mkdirSync(dir);
  for (let b = 1; b <= 5; b++) writeFileSync(join(dir, `data_batch_${b}.bin`), batch(perFile)); // equal counts, as the official files
  writeFileSync(join(dir, 'test_batch.bin'), batch(perFile));
}
