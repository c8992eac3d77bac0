/**
 * An image folder in torchvision's ImageFolder layout: one sub-folder per class, class names sorted = label
 * indices, images anywhere below their class folder (sorted paths). This core is browser-safe: it takes
 * relative paths with a way to read each file and a decoder (sharp in Node, createImageBitmap in browsers),
 * and applies the evaluation transform (transforms.ts). Decoded, cropped 8-bit images are cached up to a
 * byte budget, so evaluating several pruned models reads and decodes each image once.
 *
 * Files whose extension is not an image's (.jpg .jpeg .png .webp) are skipped and counted, as torchvision
 * skips them; a file with an image extension that does not decode is an error naming it.
 */
import { DataError } from '../errors.js';
import type { Batch, BatchOptions, Dataset, ImageShape } from './dataset.js';
import { toTensor, transformPixels, type EvalTransform, type RawImage } from './transforms.js';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];

export const isImageFile = (path: string) => IMAGE_EXTENSIONS.some((e) => path.toLowerCase().endsWith(e));

export type ImageDecoder = (bytes: Uint8Array, name: string) => Promise<RawImage>;

export interface ImageFile {
  /** Path relative to the folder: "<class>/.../<file>". */
  path: string;
  read: () => Promise<Uint8Array>;
}

export interface ImageFolderOptions {
  transform: EvalTransform;
  decode: ImageDecoder;
  /** Keep decoded crops up to this many bytes (default 1 GiB). */
  cacheBytes?: number;
  /** Images decoded at once (default 8). */
  concurrency?: number;
}

export interface FolderListing {
  classes: string[];
  samples: { file: ImageFile; label: number }[];
  /** Files skipped because their extension is not an image's. */
  skipped: string[];
}

/** Classes and samples from the files of a folder (paths relative to it), as torchvision's make_dataset orders them. */
export function listImageFolder(files: ImageFile[], name: string, classDirs: string[] = []): FolderListing {
  const byClass = new Map<string, ImageFile[]>(classDirs.map((d) => [d, []]));
  const skipped: string[] = [];
  for (const f of files) {
    const parts = f.path.split('/').filter((p) => p.length);
    if (parts.length < 2) {
      skipped.push(f.path); // a file beside the class folders belongs to no class
      continue;
    }
    if (!isImageFile(f.path)) {
      skipped.push(f.path);
      if (!byClass.has(parts[0])) byClass.set(parts[0], []);
      continue;
    }
    byClass.set(parts[0], [...(byClass.get(parts[0]) ?? []), f]);
  }
  const classes = [...byClass.keys()].sort(codepointOrder);
  if (!classes.length) throw new DataError(`${name} has no class sub-folders with images (the layout is <folder>/<class>/<image>, one sub-folder per class).`);
  const empty = classes.filter((c) => !byClass.get(c)!.length);
  if (empty.length) throw new DataError(`${name}: class folder${empty.length > 1 ? 's' : ''} ${empty.join(', ')} ha${empty.length > 1 ? 've' : 's'} no images (.jpg, .jpeg, .png, .webp).`);
  const samples = classes.flatMap((c, label) => byClass.get(c)!.sort((a, b) => codepointOrder(a.path, b.path)).map((file) => ({ file, label })));
  return { classes, samples, skipped };
}

/** Python's sorted() order on str (code points), not the locale's. */
function codepointOrder(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d) return d;
  }
  return x.length - y.length;
}

/** A folder of class sub-folders of images (torchvision's ImageFolder), decoded on demand. */
export class ImageFolderDataset implements Dataset {
  readonly count: number;
  readonly shape: ImageShape;
  readonly classes: readonly string[];
  readonly sortedByClass = true;
  readonly skipped: readonly string[];
  private readonly samples: FolderListing['samples'];
  private readonly cache = new Map<number, RawImage>();
  private cachedBytes = 0;

  constructor(readonly name: string, listing: FolderListing, private readonly o: ImageFolderOptions) {
    this.samples = listing.samples;
    this.classes = listing.classes;
    this.skipped = listing.skipped;
    this.count = listing.samples.length;
    this.shape = [o.transform.channels, o.transform.crop[0], o.transform.crop[1]];
  }

  label(i: number): number {
    return this.samples[i].label;
  }

  /** Sample i's cropped 8-bit pixels (decoded once while the cache has room). */
  async pixels(i: number): Promise<RawImage> {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const { file } = this.samples[i];
    const where = `${this.name}/${file.path}`;
    let decoded: RawImage;
    try {
      decoded = await this.o.decode(await file.read(), where);
    } catch (e) {
      if (e instanceof DataError) throw e;
      throw new DataError(`${where} could not be decoded as an image (${(e as Error).message}).`);
    }
    const img = transformPixels(decoded, this.o.transform, where);
    if (this.cachedBytes + img.data.length <= (this.o.cacheBytes ?? 2 ** 30)) {
      this.cache.set(i, img);
      this.cachedBytes += img.data.length;
    }
    return img;
  }

  async batch(indices: ArrayLike<number>, o: BatchOptions = {}): Promise<Batch> {
    const n = indices.length;
    const [C, H, W] = this.shape;
    const x = new Float32Array(n * C * H * W);
    const y = new Float32Array(n);
    const concurrency = this.o.concurrency ?? 8;
    for (let at = 0; at < n; at += concurrency) {
      const part = Array.from({ length: Math.min(concurrency, n - at) }, (_, j) => indices[at + j]);
      for (const i of part) if (!(i >= 0 && i < this.count)) throw new DataError(`Image index ${i} is outside ${this.name} (${this.count} images).`);
      const imgs = await Promise.all(part.map((i) => this.pixels(i)));
      imgs.forEach((img, j) => {
        toTensor(img, this.o.transform.normalization, x, (at + j) * C * H * W);
        y[at + j] = this.samples[part[j]].label;
      });
    }
    void o; // evaluation transforms only: no augmentation for image folders
    return { x, y };
  }
}
