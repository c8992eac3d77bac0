// Converts a float32 safetensors checkpoint to float16 (int64 tensors such as num_batches_tracked are
// copied as they are): node models/to-fp16.mjs IN.safetensors OUT.safetensors
// Half precision rounds to nearest even; values beyond the float16 range are refused, not clamped.
import { readFileSync, writeFileSync } from 'node:fs';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function floatToHalf(x) {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) throw new Error(`${x} is outside the float16 range`);
  if (e <= 0) {
    // Subnormal half: shift the mantissa (with its implicit 1) right, rounding to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // Carry from rounding may bump the exponent, which is still the correct nearest value.
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error('usage: node models/to-fp16.mjs IN.safetensors OUT.safetensors');
const bytes = readFileSync(input);
const headerLen = Number(bytes.readBigUInt64LE(0));
const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
const dataStart = 8 + headerLen;
const outHeader = {};
const chunks = [];
let offset = 0;
for (const [name, info] of Object.entries(header)) {
  if (name === '__metadata__') {
    outHeader[name] = { ...info, converted_from: `${input.split('/').pop()} (float32, rounded to float16)` };
    continue;
  }
  const raw = bytes.subarray(dataStart + info.data_offsets[0], dataStart + info.data_offsets[1]);
  let body = raw;
  let dtype = info.dtype;
  if (info.dtype === 'F32') {
    const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const halves = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) halves[i] = floatToHalf(values[i]);
    body = Buffer.from(halves.buffer);
    dtype = 'F16';
  }
  outHeader[name] = { dtype, shape: info.shape, data_offsets: [offset, offset + body.length] };
  chunks.push(body);
  offset += body.length;
}
let json = JSON.stringify(outHeader);
json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // keep the data 8-byte aligned
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
writeFileSync(output, Buffer.concat([len, Buffer.from(json), ...chunks]));
console.log(`wrote ${output}: ${offset} data bytes`);
