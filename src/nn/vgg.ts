/**
 * VGG11/13/16/19 with or without BatchNorm (torchvision's cfgs A/B/D/E), with PyTorch state_dict names.
 *
 * Two heads on the same `features`:
 * - 'cifar' (the reference, kuangliu via OTFusion): each conv 3x3, padding 1, with bias, then BatchNorm (if any)
 *   and ReLU; 2x2 max pooling; an identity AvgPool2d(1, 1) at the end of `features`; then Linear(512, classes)
 *   as `classifier`. VGG11-BN: 9,231,114 parameters.
 * - 'imagenet' (torchvision): the same convs (torchvision's have a bias too, also with BN), `avgpool` =
 *   AdaptiveAvgPool2d(7), then `classifier` = Sequential(Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096),
 *   ReLU, Dropout, Linear(4096, classes)). VGG11: 132,863,336 parameters for 1000 classes. Dropout is an
 *   identity module here (eval only), kept so the Linear layers are classifier.0/3/6 as in torchvision.
 */
import { ArgumentError, UnsupportedError } from '../errors.js';
import * as ag from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from './layers.js';
import type { Stem } from './models.js';
import { Module } from './module.js';

export type VggCfg = (number | 'M')[];

/** torchvision's cfgs: A = VGG11, B = VGG13, D = VGG16, E = VGG19 (numbers: conv widths, 'M': 2x2 max pool). */
export const VGG_CFGS = {
  vgg11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'],
  vgg19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M'],
} satisfies Record<string, VggCfg>;

export const VGG11_CFG: VggCfg = VGG_CFGS.vgg11;

/**
 * torch.nn.Dropout, kept so that torchvision's classifier indices (0, 3, 6) hold. There is no dropout kernel:
 * in eval mode (inference, pruning, metrics) it is the identity, as in PyTorch; in training mode it throws
 * rather than silently train without dropout.
 */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    if (this.training && this.p > 0) {
      throw new UnsupportedError(`Dropout ${this.path}: training-mode dropout is not implemented; call eval() first.`);
    }
    return x;
  }
}

export interface VggOptions {
  /** BatchNorm2d after every conv (the _bn variants). Default true. */
  batchNorm?: boolean;
  /** Head style: 'cifar' (Linear on the 1x1 features of a 32x32 input) or 'imagenet' (torchvision). Default 'cifar'. */
  stem?: Stem;
  /**
   * 'imagenet' only: width of the two hidden Linear layers (torchvision: 4096). torchvision's first Linear weight is
   * 392 MiB, over the 128 MiB storage-buffer binding limit of lavapipe and of browsers' default devices; a
   * smaller head fits them.
   */
  hiddenFeatures?: number;
}

/** The VGG family (11-19, with or without batch-norm), CIFAR or ImageNet style. */
export class VGG extends Module {
  readonly features: Sequential;
  /** 'imagenet' only: pools the features to 7x7 for the first Linear, whatever the input size. */
  readonly avgpool: AdaptiveAvgPool2d | null = null;
  readonly classifier: Linear | Sequential;

  constructor(cfg: VggCfg = VGG11_CFG, numClasses = 10, { batchNorm = true, stem = 'cifar', hiddenFeatures = 4096 }: VggOptions = {}) {
    super();
    if (stem !== 'cifar' && stem !== 'imagenet') throw new ArgumentError(`VGG: unknown stem "${stem}"; choose cifar or imagenet.`);
    const layers: Module[] = [];
    let channels = 3;
    for (const v of cfg) {
      if (v === 'M') {
        layers.push(new MaxPool2d(2, 2));
      } else {
        layers.push(new Conv2d(channels, v, 3, 1, 1, true));
        if (batchNorm) layers.push(new BatchNorm2d(v));
        layers.push(new ReLU());
        channels = v;
      }
    }
    if (stem === 'cifar') {
      layers.push(new AvgPool2d(1, 1)); // the reference's identity pool (no tensors), kept so the module list is its
      this.features = this.addChild('features', new Sequential(...layers));
      this.classifier = this.addChild('classifier', new Linear(channels, numClasses));
    } else {
      this.features = this.addChild('features', new Sequential(...layers));
      this.avgpool = this.addChild('avgpool', new AdaptiveAvgPool2d(7));
      this.classifier = this.addChild(
        'classifier',
        new Sequential(
          new Linear(channels * 7 * 7, hiddenFeatures), new ReLU(), new Dropout(),
          new Linear(hiddenFeatures, hiddenFeatures), new ReLU(), new Dropout(),
          new Linear(hiddenFeatures, numClasses),
        ),
      );
    }
  }

  forward(x: Tensor): Tensor {
    let h = this.features.call(x);
    if (this.avgpool) h = this.avgpool.call(h);
    return this.classifier.call(ag.flatten(h));
  }
}

export type VggName = keyof typeof VGG_CFGS;

/** A VGG by name (vgg11 ... vgg19_bn). */
export function vgg(name: VggName, numClasses = 10, options: VggOptions = {}): VGG {
  return new VGG(VGG_CFGS[name], numClasses, options);
}

/** VGG11 with batch-norm, the reference's CIFAR-10 model by default. */
export function vgg11_bn(numClasses = 10, stem: Stem = 'cifar'): VGG {
  return new VGG(VGG_CFGS.vgg11, numClasses, { batchNorm: true, stem });
}
