/** Model registry by the CLI's --model-name. */
import { ArgumentError } from '../errors.js';
import type { Module } from './module.js';
import { resnet18 } from './resnet.js';
import { vgg11_bn } from './vgg.js';

export const MODEL_NAMES = ['vgg11_bn', 'resnet18'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export function createModel(name: string, numClasses = 10): Module {
  if (name === 'vgg11_bn') return vgg11_bn(numClasses);
  if (name === 'resnet18') return resnet18(numClasses);
  throw new ArgumentError(`Unknown model "${name}"; choose one of: ${MODEL_NAMES.join(', ')}.`);
}
