/** Model registry by the CLI's --model-name: torchvision's names, in the CIFAR (default) or ImageNet style. */
import { ArgumentError } from '../errors.js';
import type { Module } from './module.js';
import { resnet18, resnet34, resnet50 } from './resnet.js';
import { VGG, VGG_CFGS } from './vgg.js';

/**
 * 'cifar': the reference's 32x32 models (VGG: Linear on the 1x1 features; ResNet: 3x3 stem, no max pool);
 * 'imagenet': torchvision's (VGG: AdaptiveAvgPool2d(7) and a 3-layer classifier; ResNet: 7x7 stride-2 stem,
 * max pool, global average pooling).
 */
export type Stem = 'cifar' | 'imagenet';
export const STEMS: readonly Stem[] = ['cifar', 'imagenet'];

/** The reference's two models first (the CLI's choices and error messages list them in this order). */
export const MODEL_NAMES = [
  'vgg11_bn', 'resnet18',
  'vgg11', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn', 'resnet34', 'resnet50',
] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface ModelOptions {
  /** Output classes. Default 10 (CIFAR-10). */
  numClasses?: number;
  /** Default 'cifar'. */
  stem?: Stem;
}

/** A built-in architecture by name (MODEL_NAMES), freshly initialised. */
export function createModel(name: ModelName, { numClasses = 10, stem = 'cifar' }: ModelOptions = {}): Module {
  if (!MODEL_NAMES.includes(name as ModelName)) {
    throw new ArgumentError(`Unknown model "${name}"; choose one of: ${MODEL_NAMES.join(', ')}.`);
  }
  if (!STEMS.includes(stem)) throw new ArgumentError(`Unknown stem "${stem}"; choose one of: ${STEMS.join(', ')}.`);
  if (!(Number.isInteger(numClasses) && numClasses >= 1)) {
    throw new ArgumentError(`numClasses must be a positive integer, got ${numClasses}.`);
  }
  if (name === 'resnet18') return resnet18(numClasses, stem);
  if (name === 'resnet34') return resnet34(numClasses, stem);
  if (name === 'resnet50') return resnet50(numClasses, stem);
  const [family, bn] = name.split('_') as [keyof typeof VGG_CFGS, string | undefined];
  return new VGG(VGG_CFGS[family], numClasses, { batchNorm: bn === 'bn', stem });
}
