/**
 * torchvision's evaluation transforms on decoded 8-bit RGB pixels, in plain TypeScript (Node and browsers):
 *   Resize(S)          shorter side to S, longer to int(S * long / short), PIL's antialiased bilinear filter
 *   CenterCrop(H, W)   offsets int(round((h - H) / 2)) with Python's round-half-to-even
 *   ToTensor           /255, HWC -> CHW
 *   Normalize          (x - mean) / std per channel
 *
 * The resize reproduces Pillow's ImagingResample for 8-bit images (what torchvision calls on PIL images):
 * a separable triangle filter whose support widens by the scale factor when shrinking (the antialiasing),
 * coefficients normalised per output pixel and then fixed to 22-bit integers, a horizontal pass rounded to
 * 8 bits, then a vertical pass on the rows it needs. Doing it here rather than in sharp/libvips (whose
 * reducers differ in rounding and pre-shrinking) gives PIL's bytes exactly, in both Node and browsers.
 */
import { DataError } from '../errors.js';
import type { Normalization } from './normalization.js';

/** Decoded pixels: `channels` interleaved 8-bit values per pixel, row-major. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * PIL's convert('RGB') on what a decoder returns: grey is repeated into R, G and B; an alpha channel is
 * dropped (not composited: PIL keeps the colour values of transparent pixels).
 */
export function toRgb(img: RawImage): RawImage {
  const { width, height, channels, data } = img;
  if (channels === 3) return img;
  if (![1, 2, 4].includes(channels)) throw new DataError(`An image with ${channels} channels cannot be converted to RGB.`);
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    if (channels <= 2) out[p * 3] = out[p * 3 + 1] = out[p * 3 + 2] = data[s];
    else {
      out[p * 3] = data[s];
      out[p * 3 + 1] = data[s + 1];
      out[p * 3 + 2] = data[s + 2];
    }
  }
  return { data: out, width, height, channels: 3 };
}

/** Grey (ITU-R 601-2 luma, as PIL's convert('L') in integer arithmetic) for one-channel models. */
export function toGrey(img: RawImage): RawImage {
  const rgb = toRgb(img);
  const out = new Uint8Array(rgb.width * rgb.height);
  // PIL: L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16.
  for (let p = 0; p < out.length; p++) out[p] = (rgb.data[p * 3] * 19595 + rgb.data[p * 3 + 1] * 38470 + rgb.data[p * 3 + 2] * 7471 + 0x8000) >>> 16;
  return { data: out, width: rgb.width, height: rgb.height, channels: 1 };
}

const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;

/** Per output pixel: the first input index, the tap count, and integer weights (PIL's precompute_coeffs). */
function bilinearCoefficients(inSize: number, outSize: number): { first: Int32Array; taps: Int32Array; weights: Int32Array; ksize: number } {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle's support is 1, widened by the scale when shrinking
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const taps = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const inverse = 1 / filterScale; // multiplied, not divided, as PIL does (the last bit can flip a rounding)
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let sum = 0;
    for (let i = lo; i < hi; i++) {
      const t = Math.abs((i - center + 0.5) * inverse);
      w[i - lo] = t < 1 ? 1 - t : 0;
      sum += w[i - lo];
    }
    for (let i = 0; i < hi - lo; i++) {
      const k = sum !== 0 ? w[i] / sum : w[i];
      weights[o * ksize + i] = Math.trunc(k < 0 ? -0.5 + k * ONE : 0.5 + k * ONE);
    }
    first[o] = lo;
    taps[o] = hi - lo;
  }
  return { first, taps, weights, ksize };
}

const clip8 = (acc: number) => Math.min(255, Math.max(0, Math.floor(acc / ONE)));

/** PIL's Image.resize((width, height), BILINEAR) of an 8-bit image with any channel count. */
export function resizeBilinear(img: RawImage, width: number, height: number): RawImage {
  if (!(width >= 1 && height >= 1)) throw new DataError(`Cannot resize to ${width}x${height}.`);
  const C = img.channels;
  if (width === img.width && height === img.height) return img;
  const vert = bilinearCoefficients(img.height, height);
  // Only the input rows the vertical pass reads are resampled horizontally.
  const rowFirst = vert.first[0];
  const rowEnd = vert.first[height - 1] + vert.taps[height - 1];
  let src = img.data;
  let srcWidth = img.width;
  let rowOffset = 0;
  if (width !== img.width) {
    const h = bilinearCoefficients(img.width, width);
    const rows = rowEnd - rowFirst;
    const tmp = new Uint8Array(rows * width * C);
    for (let y = 0; y < rows; y++) {
      const inRow = (y + rowFirst) * img.width * C;
      for (let x = 0; x < width; x++) {
        const f = h.first[x], n = h.taps[x], kb = x * h.ksize;
        for (let c = 0; c < C; c++) {
          let acc = ONE / 2;
          for (let t = 0; t < n; t++) acc += img.data[inRow + (f + t) * C + c] * h.weights[kb + t];
          tmp[(y * width + x) * C + c] = clip8(acc);
        }
      }
    }
    src = tmp;
    srcWidth = width;
    rowOffset = rowFirst;
  }
  if (height === img.height) return { data: src, width, height, channels: C };
  const out = new Uint8Array(width * height * C);
  for (let y = 0; y < height; y++) {
    const f = vert.first[y] - rowOffset, n = vert.taps[y], kb = y * vert.ksize;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < C; c++) {
        let acc = ONE / 2;
        for (let t = 0; t < n; t++) acc += src[((f + t) * srcWidth + x) * C + c] * vert.weights[kb + t];
        out[(y * width + x) * C + c] = clip8(acc);
      }
    }
  }
  return { data: out, width, height, channels: C };
}

/** torchvision's Resize(size) with an int: the shorter side becomes `size`, the longer int(size * long / short). */
export function resizeShorterSide(img: RawImage, size: number): RawImage {
  const { width: w, height: h } = img;
  const [short, long] = w <= h ? [w, h] : [h, w];
  const newLong = Math.trunc((size * long) / short);
  return w <= h ? resizeBilinear(img, size, newLong) : resizeBilinear(img, newLong, size);
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision's CenterCrop((height, width)); an image smaller than the crop is an error (torchvision would pad it with black). */
export function centerCrop(img: RawImage, height: number, width: number, name = 'image'): RawImage {
  if (img.width < width || img.height < height) {
    throw new DataError(`${name} is ${img.width}x${img.height}, smaller than the ${width}x${height} crop; resize it first (--resize) or pass a smaller --input-shape.`);
  }
  const top = roundHalfEven((img.height - height) / 2);
  const left = roundHalfEven((img.width - width) / 2);
  const C = img.channels;
  const out = new Uint8Array(width * height * C);
  for (let y = 0; y < height; y++) out.set(img.data.subarray(((y + top) * img.width + left) * C, ((y + top) * img.width + left + width) * C), y * width * C);
  return { data: out, width, height, channels: C };
}

/** ToTensor and Normalize: HWC bytes into `out` (CHW floats) at `offset`. */
export function toTensor(img: RawImage, normalization: Normalization, out: Float32Array, offset = 0): void {
  const { width, height, channels: C, data } = img;
  const plane = width * height;
  for (let c = 0; c < C; c++) {
    const scale = 1 / (255 * normalization.std[c]);
    const shift = -normalization.mean[c] / normalization.std[c];
    for (let p = 0; p < plane; p++) out[offset + c * plane + p] = data[p * C + c] * scale + shift;
  }
}

/** An evaluation transform: Resize(resize) (none when null), CenterCrop(crop), ToTensor, Normalize. */
export interface EvalTransform {
  /** The shorter side before the crop; null: crop only (images must be at least the crop). */
  resize: number | null;
  /** Crop height and width: the model's input size. */
  crop: [number, number];
  /** Input channels: 3 (RGB, PIL's convert('RGB')) or 1 (PIL's convert('L')). */
  channels: number;
  normalization: Normalization;
}

/** The conventional resize for a crop: 256 for 224 (ImageNet's 0.875 ratio), rounded for other sizes. */
export function defaultResize(crop: [number, number]): number {
  return Math.round((Math.max(crop[0], crop[1]) * 256) / 224);
}

/** Decoded pixels through the whole transform: the cropped 8-bit image (before ToTensor). */
export function transformPixels(img: RawImage, t: EvalTransform, name = 'image'): RawImage {
  let x = t.channels === 1 ? toGrey(img) : t.channels === 3 ? toRgb(img) : null;
  if (!x) throw new DataError(`Images can feed models with 1 or 3 input channels, not ${t.channels}.`);
  if (t.resize !== null) x = resizeShorterSide(x, t.resize);
  return centerCrop(x, t.crop[0], t.crop[1], t.resize === null ? name : `${name} after Resize(${t.resize})`);
}
