/**
 * Image decoding in browsers: createImageBitmap (no colour-space conversion, no alpha premultiplication) drawn
 * onto an OffscreenCanvas at its own size, read back as RGBA bytes. The eval transform (transforms.ts) then
 * runs on them exactly as in Node. Unlike PIL, a canvas cannot keep the colour of fully transparent pixels.
 */
import { DataError } from '../errors.js';
import type { RawImage } from './transforms.js';

/** Decodes image bytes to CHW uint8 pixels with the browser's image decoder. */
export async function decodeImageInBrowser(bytes: Uint8Array, name = 'image'): Promise<RawImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new DataError(`${name} could not be decoded as an image (${(e as Error).message}).`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new DataError('This browser has no 2D OffscreenCanvas to decode images with.');
  ctx.drawImage(bitmap, 0, 0);
  const { data, width, height } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height, channels: 4 };
}
