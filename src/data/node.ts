/**
 * Datasets from disk in Node: `openDataset(path)` detects the kind (or takes `format`):
 *   - cifar10:     a folder with CIFAR-10's binary batches (or its cifar-10-batches-bin/);
 *   - imagefolder: a folder of class sub-folders of images, decoded with sharp (libvips, prebuilt binaries);
 *   - tensors:     a .safetensors or .npz file with x and y, or a folder with x.npy and y.npy.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, relative, sep } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { DataError } from '../errors.js';
import { loadCifar10, type LoadCifarOptions } from './cifar10-node.js';
import { cifar10Dataset, type Dataset } from './dataset.js';
import { ImageFolderDataset, listImageFolder, type ImageFile } from './imagefolder.js';
import type { Normalization } from './normalization.js';
import { parseNpy, parseNpz, safetensorsArrays, tensorDataset, type NdArray } from './tensors.js';
import type { EvalTransform, RawImage } from './transforms.js';

export const DATA_FORMATS = ['cifar10', 'imagefolder', 'tensors'] as const;
export type DataFormat = (typeof DATA_FORMATS)[number];

const CIFAR_FILES = ['data_batch_1.bin', 'test_batch.bin'];
const TENSOR_FILE = /\.(safetensors|npz)$/i;

/** What kind of dataset `path` holds, from its name and contents. */
export function detectDataFormat(path: string): DataFormat {
  if (!existsSync(path)) throw new DataError(`--data ${path} does not exist.`);
  if (!statSync(path).isDirectory()) {
    if (TENSOR_FILE.test(path)) return 'tensors';
    throw new DataError(`--data ${path} is a file but not .safetensors or .npz (x [N,C,H,W], y [N]); an image folder or CIFAR-10 is a directory.`);
  }
  if ([path, join(path, 'cifar-10-batches-bin')].some((d) => CIFAR_FILES.every((f) => existsSync(join(d, f))))) return 'cifar10';
  if (existsSync(join(path, 'x.npy'))) return 'tensors';
  const entries = readdirSync(path, { withFileTypes: true });
  if (entries.some((e) => isDir(join(path, e.name)))) return 'imagefolder';
  if (!entries.length) throw new DataError(`--data ${path} is an empty folder.`);
  throw new DataError(`--data ${path} has no class sub-folders, CIFAR-10 batches or x.npy; see --help for the layouts (--data-format names one).`);
}

const isDir = (p: string) => {
  try {
    return statSync(p).isDirectory(); // follows symbolic links, as torchvision's os.walk(followlinks=True)
  } catch {
    return false;
  }
};

/** Every file below `dir` (following links), as paths relative to it with "/" separators. */
function walk(dir: string, root = dir, out: ImageFile[] = []): ImageFile[] {
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = join(dir, e.name);
    if (isDir(p)) walk(p, root, out);
    else out.push({ path: relative(root, p).split(sep).join('/'), read: async () => readFileSync(p) });
  }
  return out;
}

let sharpModule: Promise<typeof import('sharp')> | null = null;

/** Decodes JPEG, PNG or WebP bytes with sharp (no colour conversion, no EXIF rotation: what PIL's open() gives). */
export async function decodeImage(bytes: Uint8Array, name = 'image'): Promise<RawImage> {
  sharpModule ??= import('sharp').catch((e: Error) => {
    throw new DataError(`Decoding images needs the sharp package (npm install sharp): ${e.message}`);
  });
  const sharp = (await sharpModule).default;
  let out: { data: Buffer; info: { width: number; height: number; channels: number; depth?: string } };
  try {
    out = await sharp(bytes, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new DataError(`${name} could not be decoded as an image: ${(e as Error).message}.`);
  }
  const { width, height, channels } = out.info;
  let data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
  if (data.length === width * height * channels * 2) {
    // 16-bit samples: keep the high byte, as PIL reads a 16-bit RGB PNG into its 8-bit RGB mode.
    const wide = new Uint16Array(out.data.buffer.slice(out.data.byteOffset, out.data.byteOffset + out.data.byteLength));
    data = Uint8Array.from(wide, (v) => v >> 8);
  }
  return { data, width, height, channels };
}

export interface OpenDatasetOptions {
  format?: DataFormat;
  /** For image folders (and uint8 tensors, which use its normalisation). */
  transform: EvalTransform;
  normalization: Normalization;
  /** CIFAR-10: which split (default test). */
  split?: 'train' | 'test';
  cifar?: LoadCifarOptions;
  cacheBytes?: number;
}

export interface OpenedDataset {
  dataset: Dataset;
  format: DataFormat;
  /** Image folders: files skipped for their extension. */
  skipped: string[];
}

function readTensorArrays(path: string): Map<string, NdArray> {
  if (isDir(path)) {
    const arrays = new Map<string, NdArray>();
    for (const n of ['x', 'y']) if (existsSync(join(path, `${n}.npy`))) arrays.set(n, parseNpy(readFileSync(join(path, `${n}.npy`)), join(path, `${n}.npy`)));
    return arrays;
  }
  const bytes = readFileSync(path);
  if (/\.npz$/i.test(path)) return parseNpz(bytes, (b) => inflateRawSync(b), path);
  if (/\.safetensors$/i.test(path)) return safetensorsArrays(bytes, path);
  if (/\.npy$/i.test(path)) throw new DataError(`${path}: a single .npy holds no labels; put x.npy and y.npy in one folder and pass the folder, or use .npz.`);
  throw new DataError(`${path}: unknown tensor file type ${extname(path) || '(none)'} (use .safetensors, .npz, or a folder with x.npy and y.npy).`);
}

/** Opens `path` as a dataset (see the file comment). */
export async function openDataset(path: string, o: OpenDatasetOptions): Promise<OpenedDataset> {
  const format = o.format ?? detectDataFormat(path);
  if (!existsSync(path)) throw new DataError(`--data ${path} does not exist.`);
  switch (format) {
    case 'cifar10': {
      const c = await loadCifar10(path, { download: false, ...o.cifar });
      return { dataset: cifar10Dataset(o.split === 'train' ? c.train : c.test, o.normalization, `CIFAR-10 ${o.split ?? 'test'} (${c.dir})`), format, skipped: [] };
    }
    case 'tensors':
      return { dataset: tensorDataset(readTensorArrays(path), o.normalization, path), format, skipped: [] };
    case 'imagefolder': {
      if (!isDir(path)) throw new DataError(`--data ${path} is not a folder (an image folder has one sub-folder per class).`);
      const files = walk(path);
      const classDirs = readdirSync(path).filter((n) => isDir(join(path, n)));
      const listing = listImageFolder(files, basename(path) === '' ? path : path, classDirs);
      const dataset = new ImageFolderDataset(path, listing, { transform: o.transform, decode: decodeImage, cacheBytes: o.cacheBytes });
      return { dataset, format, skipped: listing.skipped };
    }
  }
}
