/** Seeded random initialisation matching PyTorch's defaults for Conv2d and Linear. */

/** Mulberry32: a small seeded generator. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let defaultRandom = seededRandom(0);

export function setInitSeed(seed: number): void {
  defaultRandom = seededRandom(seed);
}

/**
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's kaiming_uniform_(a=sqrt(5)) gives for weights and
 * its default bias init for Conv2d and Linear.
 */
export function uniformFanIn(count: number, fanIn: number, random = defaultRandom): Float32Array {
  const bound = 1 / Math.sqrt(fanIn);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (random() * 2 - 1) * bound;
  return out;
}
