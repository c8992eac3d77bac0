/**
 * VGG11-BN for CIFAR-10, as in the reference (kuangliu via OTFusion): cfg [64,M,128,M,256,256,M,512,512,M,
 * 512,512,M]; each conv 3x3, padding 1, with bias, then BatchNorm and ReLU; 2x2 max pooling; an identity
 * AvgPool2d(1, 1) at the end of `features`; then Linear(512, 10) as `classifier`. 9,231,114 parameters.
 */
import * as ag from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from './layers.js';
import { Module } from './module.js';

export const VGG11_CFG: (number | 'M')[] = [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'];

export class VGG extends Module {
  readonly features: Sequential;
  readonly classifier: Linear;

  constructor(cfg: (number | 'M')[] = VGG11_CFG, numClasses = 10) {
    super();
    const layers: Module[] = [];
    let channels = 3;
    for (const v of cfg) {
      if (v === 'M') {
        layers.push(new MaxPool2d(2, 2));
      } else {
        layers.push(new Conv2d(channels, v, 3, 1, 1, true), new BatchNorm2d(v), new ReLU());
        channels = v;
      }
    }
    layers.push(new AvgPool2d(1, 1));
    this.features = this.addChild('features', new Sequential(...layers));
    this.classifier = this.addChild('classifier', new Linear(channels, numClasses));
  }

  forward(x: Tensor): Tensor {
    return this.classifier.call(ag.flatten(this.features.call(x)));
  }
}

export function vgg11_bn(numClasses = 10): VGG {
  return new VGG(VGG11_CFG, numClasses);
}
