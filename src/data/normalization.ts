/**
 * Input normalisation (torchvision's Normalize: (x - mean) / std per channel, on x in [0, 1]): the presets,
 * "r,g,b" strings as checkpoints and ONNX files carry them (normalize_mean / normalize_std metadata), and the
 * choice between a user's flags, the model's own metadata and a default.
 */
import { DataError } from '../errors.js';

export interface Normalization {
  /** One value per input channel (three for RGB; one for a grey-scale model). */
  mean: number[];
  std: number[];
}

/** The statistics the shared checkpoint was trained with (CIFAR-10's own). */
export const CIFAR10_STATS: Normalization = { mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.201] };
/** ImageNet's statistics (torchvision's pretrained models; the reference's CIFAR-10 normalisation, spec section 5). */
export const IMAGENET_STATS: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
/** No normalisation: the model sees ToTensor's [0, 1] values. */
export const IDENTITY_STATS: Normalization = { mean: [0, 0, 0], std: [1, 1, 1] };

export const NORMALIZATION_PRESETS: Record<string, Normalization> = { imagenet: IMAGENET_STATS, cifar10: CIFAR10_STATS, none: IDENTITY_STATS };

function parseList(text: string, what: string): number[] {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (!v.length || v.some((x) => !Number.isFinite(x))) throw new DataError(`Bad normalisation ${what} "${text}": expected numbers separated by commas.`);
  return v;
}

/** Parses a normalisation given as "r,g,b" strings (checkpoint or ONNX metadata); null when either is absent. */
export function parseNormalization(mean: string | undefined, std: string | undefined): Normalization | null {
  if (!mean || !std) return null;
  const m = parseList(mean, 'mean');
  const s = parseList(std, 'std');
  if (m.length !== s.length || (m.length !== 3 && m.length !== 1) || s.some((v) => v <= 0)) {
    throw new DataError(`Bad normalisation "${mean}" / "${std}": expected three numbers each (one for a grey-scale model), std positive.`);
  }
  return { mean: m, std: s };
}

/** The normalisation for `channels` input channels: one value per channel (a single value is repeated). */
export function forChannels(n: Normalization, channels: number): Normalization {
  const fit = (v: number[]) => (v.length === channels ? v : v.length === 1 ? new Array<number>(channels).fill(v[0]) : null);
  const mean = fit(n.mean);
  const std = fit(n.std);
  if (!mean || !std) throw new DataError(`The normalisation has ${n.mean.length} values per statistic, but the model's input has ${channels} channels.`);
  return { mean, std };
}

/**
 * Which normalisation a run uses: the user's (a preset name or explicit mean/std) first, then the model's
 * own (its checkpoint or ONNX metadata), then `fallback`. Returns it with where it came from, for the log.
 */
export function chooseNormalization(o: { preset?: string; mean?: number[]; std?: number[]; model?: Normalization | null; fallback: Normalization }): { normalization: Normalization; source: string } {
  if (o.mean || o.std) {
    if (!o.mean || !o.std) throw new DataError('--mean and --std go together: give both.');
    return { normalization: parseNormalization(o.mean.join(','), o.std.join(','))!, source: 'given by --mean/--std' };
  }
  if (o.preset) {
    const p = NORMALIZATION_PRESETS[o.preset];
    if (!p) throw new DataError(`Unknown normalisation "${o.preset}"; choose one of: ${Object.keys(NORMALIZATION_PRESETS).join(', ')}.`);
    return { normalization: p, source: `preset ${o.preset}` };
  }
  if (o.model) return { normalization: o.model, source: "the model's metadata" };
  return { normalization: o.fallback, source: 'default' };
}

export const formatNormalization = (n: Normalization) => `mean ${n.mean.join(',')} std ${n.std.join(',')}`;
