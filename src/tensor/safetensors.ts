/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping names to
 * {dtype, shape, data_offsets}, then the raw little-endian data. Works on ArrayBuffers, so it runs in
 * Node and in browsers. Float64 and integer tensors are converted to float32 on read (`values`);
 * int64 values beyond 2^53 are rejected rather than silently rounded.
 */

export type DType = 'F32' | 'F64' | 'F16' | 'I64' | 'I32' | 'U8' | 'BOOL';

export interface SafeTensor {
  dtype: DType;
  shape: number[];
  /** Values as float32 (every dtype converted). */
  values: Float32Array;
}

export interface SafeTensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<DType, number> = { F32: 4, F64: 8, F16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };

import { IntraFusionError } from '../errors.js';

/** A safetensors file that is malformed or holds an unsupported dtype. */
export class SafetensorsError extends IntraFusionError {
  override name = 'SafetensorsError';
}

/** An IEEE half-precision value (its 16 bits) as a number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Parses a safetensors file into float32 tensors and its metadata; `source` names it in errors. */
export function parseSafetensors(bytes: ArrayBuffer | Uint8Array, source = 'safetensors data'): SafeTensorsFile {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  if (u8.byteLength < 8) throw new SafetensorsError(`${source}: too short to be a safetensors file.`);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > u8.byteLength - 8) throw new SafetensorsError(`${source}: header length ${headerLen} exceeds the file size.`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new SafetensorsError(`${source}: the header is not valid JSON (${(e as Error).message}).`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${source}: the header is ${header === null ? 'null' : Array.isArray(header) ? 'a list' : `a ${typeof header}`}, not a map of tensors.`);
  }
  const dataStart = 8 + headerLen;
  const dataBytes = u8.byteLength - dataStart;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  /** Byte ranges of the data section taken so far: tensors may not overlap. */
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsError(`${source}: __metadata__ is not a map of strings.`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new SafetensorsError(`${source}: metadata "${k}" is ${v === null ? 'null' : `a ${typeof v}`}; safetensors metadata values are strings.`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const bad = (why: string) => new SafetensorsError(`${source}: tensor "${name}" ${why}.`);
    if (typeof raw !== 'object' || raw === null) throw bad('is not a {dtype, shape, data_offsets} entry');
    const info = raw as { dtype: DType; shape: unknown; data_offsets: unknown };
    const width = BYTES[info.dtype];
    if (!width || !Object.hasOwn(BYTES, info.dtype)) throw bad(`has unsupported dtype ${String(info.dtype)}`);
    if (!Array.isArray(info.shape) || info.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(`has no valid shape (${JSON.stringify(info.shape)}): expected a list of non-negative integers`);
    const shape = info.shape as number[];
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw bad(`has bad data_offsets ${JSON.stringify(offsets)}: expected [begin, end], non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    const count = shape.reduce((a, b) => a * b, 1);
    if (end < begin || end - begin !== count * width) throw bad(`has data_offsets [${begin}, ${end}], which do not hold shape [${shape}] ${info.dtype} (${count * width} bytes)`);
    if (end > dataBytes) throw bad(`has data_offsets [${begin}, ${end}] beyond the file's ${dataBytes} data bytes (truncated file?)`);
    const overlap = begin < end ? ranges.find(([b, e]) => begin < e && b < end) : undefined;
    if (overlap) throw bad(`overlaps tensor "${overlap[2]}" in the data section ([${begin}, ${end}] and [${overlap[0]}, ${overlap[1]}])`);
    ranges.push([begin, end, name]);
    const at = dataStart + begin;
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const o = at + i * width;
      switch (info.dtype) {
        case 'F32': values[i] = view.getFloat32(o, true); break;
        case 'F64': values[i] = view.getFloat64(o, true); break;
        case 'F16': values[i] = halfToFloat(view.getUint16(o, true)); break;
        case 'I32': values[i] = view.getInt32(o, true); break;
        case 'U8': case 'BOOL': values[i] = view.getUint8(o); break;
        case 'I64': {
          const v = view.getBigInt64(o, true);
          if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
            throw new SafetensorsError(`${source}: int64 value of "${name}" does not fit a float.`);
          }
          values[i] = Number(v);
          break;
        }
      }
    }
    tensors.set(name, { dtype: info.dtype, shape, values });
  }
  return { tensors, metadata };
}

export interface TensorToWrite {
  shape: number[];
  values: Float32Array | BigInt64Array;
}

/** Serialises float32 (and int64) tensors in name order, 8-byte aligned as the reference writer does. */
export function serializeSafetensors(tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.values.length) throw new SafetensorsError(`tensor "${name}": ${t.values.length} values for shape [${t.shape}].`);
    const dtype = t.values instanceof BigInt64Array ? 'I64' : 'F32';
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.values.byteLength] };
    offset += t.values.byteLength;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data starts 8-byte aligned.
  const headerBytes = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  headerBytes.set(raw);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const name of names) {
    const v = tensors.get(name)!.values;
    out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), at);
    at += v.byteLength;
  }
  return out;
}
