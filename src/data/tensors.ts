/**
 * Preprocessed tensors as a dataset, for users who prepare their data in Python: `x` [N, C, H, W] and `y` [N]
 * integer labels, from a .safetensors file, a .npz archive (np.savez or np.savez_compressed), or .npy files.
 *   - x float (float16/32/64): taken as the model's input as it is (already normalised);
 *   - x uint8: pixels, scaled by 1/255 and normalised like images (ToTensor + Normalize).
 * The parsers work on bytes (browser-safe); .npz needs a raw-deflate function for compressed members.
 */
import { DataError } from '../errors.js';
import { halfToFloat, parseSafetensors } from '../tensor/safetensors.js';
import type { Batch, Dataset, ImageShape } from './dataset.js';
import type { Normalization } from './normalization.js';

export interface NdArray {
  dtype: string;
  shape: number[];
  /** Values (float32 for floats and integers alike; uint8 pixels kept as bytes). */
  data: Float32Array | Uint8Array;
}

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses a .npy file (format 1.0-3.0, C order; bool, int8-64, uint8-64, float16/32/64, little-endian or bytes). */
export function parseNpy(bytes: Uint8Array, source = '.npy data'): NdArray {
  if (bytes.length < 10 || NPY_MAGIC.some((b, i) => bytes[i] !== b)) throw new DataError(`${source} is not a .npy file (bad magic).`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new DataError(`${source}: unreadable .npy header ${header.trim()}.`);
  if (fortran === 'True') throw new DataError(`${source}: Fortran-ordered arrays are not supported; save np.ascontiguousarray(x).`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(start + headerLen);
  const kind = descr.slice(1);
  if (descr[0] === '>' && !kind.endsWith('1')) throw new DataError(`${source}: big-endian ${descr} arrays are not supported; save x.astype('<${kind}').`);
  const width = Number(kind.slice(1));
  if (body.length < count * width) throw new DataError(`${source}: truncated (${body.length} bytes of data for ${count} x ${descr}).`);
  if (kind === 'u1' || kind === 'b1') return { dtype: kind === 'u1' ? 'uint8' : 'bool', shape, data: body.slice(0, count) };
  const data = new Float32Array(count);
  const dv = new DataView(body.buffer, body.byteOffset, count * width);
  const read: Record<string, (i: number) => number> = {
    f2: (i) => halfToFloat(dv.getUint16(i * 2, true)), f4: (i) => dv.getFloat32(i * 4, true), f8: (i) => dv.getFloat64(i * 8, true),
    i1: (i) => dv.getInt8(i), i2: (i) => dv.getInt16(i * 2, true), i4: (i) => dv.getInt32(i * 4, true), i8: (i) => Number(dv.getBigInt64(i * 8, true)),
    u2: (i) => dv.getUint16(i * 2, true), u4: (i) => dv.getUint32(i * 4, true), u8: (i) => Number(dv.getBigUint64(i * 8, true)),
  };
  const f = read[kind];
  if (!f) throw new DataError(`${source}: dtype ${descr} is not supported (floats, integers, uint8, bool are).`);
  for (let i = 0; i < count; i++) data[i] = f(i);
  return { dtype: kind[0] === 'f' ? `float${width * 8}` : `${kind[0] === 'u' ? 'uint' : 'int'}${width * 8}`, shape, data };
}

/** Members of a zip archive (stored or deflated, zip64 sizes included), by name. */
export function unzip(bytes: Uint8Array, inflateRaw: (b: Uint8Array) => Uint8Array, source = 'zip data'): Map<string, Uint8Array> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new DataError(`${source} is not a zip (.npz) archive.`);
  let entries = dv.getUint16(eocd + 10, true);
  let at = dv.getUint32(eocd + 16, true);
  if (at === 0xffffffff || entries === 0xffff) {
    const locator = eocd - 20; // zip64 end-of-central-directory locator
    if (locator < 0 || dv.getUint32(locator, true) !== 0x07064b50) throw new DataError(`${source}: broken zip64 archive.`);
    const z64 = Number(dv.getBigUint64(locator + 8, true));
    entries = Number(dv.getBigUint64(z64 + 32, true));
    at = Number(dv.getBigUint64(z64 + 48, true));
  }
  const files = new Map<string, Uint8Array>();
  for (let e = 0; e < entries; e++) {
    if (dv.getUint32(at, true) !== 0x02014b50) throw new DataError(`${source}: broken zip central directory.`);
    const method = dv.getUint16(at + 10, true);
    let compressed = dv.getUint32(at + 20, true);
    let local = dv.getUint32(at + 42, true);
    const nameLen = dv.getUint16(at + 28, true), extraLen = dv.getUint16(at + 30, true), commentLen = dv.getUint16(at + 32, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    // zip64 extra field: the 64-bit values of the fields saturated at 0xffffffff, in order.
    const size32 = dv.getUint32(at + 24, true);
    for (let x = at + 46 + nameLen; x < at + 46 + nameLen + extraLen; ) {
      const id = dv.getUint16(x, true), len = dv.getUint16(x + 2, true);
      if (id === 1) {
        let p = x + 4;
        if (size32 === 0xffffffff) p += 8;
        if (compressed === 0xffffffff) (compressed = Number(dv.getBigUint64(p, true))), (p += 8);
        if (local === 0xffffffff) local = Number(dv.getBigUint64(p, true));
      }
      x += 4 + len;
    }
    const dataStart = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    const raw = bytes.subarray(dataStart, dataStart + compressed);
    if (method === 0) files.set(name, raw);
    else if (method === 8) files.set(name, inflateRaw(raw));
    else throw new DataError(`${source}: ${name} uses zip compression method ${method}; save with np.savez or np.savez_compressed.`);
    at += 46 + nameLen + extraLen + commentLen;
  }
  return files;
}

/** The arrays of a .npz archive, by name without ".npy". */
export function parseNpz(bytes: Uint8Array, inflateRaw: (b: Uint8Array) => Uint8Array, source = '.npz data'): Map<string, NdArray> {
  const out = new Map<string, NdArray>();
  for (const [name, member] of unzip(bytes, inflateRaw, source)) out.set(name.replace(/\.npy$/, ''), parseNpy(member, `${source}:${name}`));
  return out;
}

/** The `x` and `y` tensors of a .safetensors file. */
export function safetensorsArrays(bytes: Uint8Array, source: string): Map<string, NdArray> {
  const file = parseSafetensors(bytes, source);
  const out = new Map<string, NdArray>();
  for (const [name, t] of file.tensors) {
    out.set(name, { dtype: t.dtype === 'U8' ? 'uint8' : t.dtype.toLowerCase(), shape: t.shape, data: t.dtype === 'U8' ? Uint8Array.from(t.values) : t.values });
  }
  return out;
}

/** x [N, C, H, W] and y [N] as a dataset (see the file comment for how x is scaled). */
export function tensorDataset(arrays: Map<string, NdArray>, normalization: Normalization, name: string): Dataset {
  const x = arrays.get('x');
  const y = arrays.get('y');
  if (!x) throw new DataError(`${name} has no tensor named "x" (found: ${[...arrays.keys()].join(', ') || 'none'}); save x as [N, C, H, W] and y as [N].`);
  if (x.shape.length !== 4) throw new DataError(`${name}: x has shape [${x.shape}], expected [N, C, H, W].`);
  const [N, C, H, W] = x.shape;
  if (!y) throw new DataError(`${name} has no tensor named "y" (integer labels, [${N}]).`);
  if (y.shape.length !== 1 || y.shape[0] !== N) throw new DataError(`${name}: y has shape [${y.shape}], expected [${N}] (one label per sample of x).`);
  if (y.dtype.startsWith('float')) throw new DataError(`${name}: y is ${y.dtype}; labels must be integers.`);
  for (let i = 0; i < N; i++) if (y.data[i] < 0) throw new DataError(`${name}: label ${y.data[i]} of sample ${i} is negative.`);
  const pixels = x.dtype === 'uint8';
  if (pixels && normalization.mean.length !== C && normalization.mean.length !== 1) throw new DataError(`${name}: x has ${C} channels but the normalisation has ${normalization.mean.length} values.`);
  const per = C * H * W;
  const shape: ImageShape = [C, H, W];
  return {
    name, count: N, shape,
    async batch(indices): Promise<Batch> {
      const out = new Float32Array(indices.length * per);
      const labels = new Float32Array(indices.length);
      for (let b = 0; b < indices.length; b++) {
        const i = indices[b];
        if (!(i >= 0 && i < N)) throw new DataError(`Sample index ${i} is outside ${name} (${N} samples).`);
        labels[b] = y.data[i];
        const src = x.data.subarray(i * per, (i + 1) * per);
        if (!pixels) {
          out.set(src, b * per);
          continue;
        }
        for (let c = 0; c < C; c++) {
          const m = normalization.mean[normalization.mean.length === 1 ? 0 : c], s = normalization.std[normalization.std.length === 1 ? 0 : c];
          for (let p = 0; p < H * W; p++) out[b * per + c * H * W + p] = (src[c * H * W + p] / 255 - m) / s;
        }
      }
      return { x: out, y: labels };
    },
  };
}
