/**
 * ResNet18 for CIFAR-10, as in the reference (kuangliu): a 3x3 stem conv (with bias) + BN + ReLU, no max
 * pool; BasicBlocks [2, 2, 2, 2] with widths 64/128/256/512 and strides 1/2/2/2; every conv has a bias;
 * the shortcut is a 1x1 conv (bias) + BN when the stride or width changes; then avg_pool2d(4) and
 * Linear(512, 10) as `linear`. 11,178,762 parameters.
 */
import * as ag from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d, Linear, Sequential } from './layers.js';
import { Module } from './module.js';

export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Sequential;

  constructor(inPlanes: number, planes: number, stride: number) {
    super();
    this.conv1 = this.addChild('conv1', new Conv2d(inPlanes, planes, 3, stride, 1, true));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(planes));
    this.conv2 = this.addChild('conv2', new Conv2d(planes, planes, 3, 1, 1, true));
    this.bn2 = this.addChild('bn2', new BatchNorm2d(planes));
    this.shortcut = this.addChild(
      'shortcut',
      stride !== 1 || inPlanes !== planes
        ? new Sequential(new Conv2d(inPlanes, planes, 1, stride, 0, true), new BatchNorm2d(planes))
        : new Sequential(),
    );
  }

  forward(x: Tensor): Tensor {
    const out = this.bn2.call(this.conv2.call(ag.relu(this.bn1.call(this.conv1.call(x)))));
    return ag.relu(ag.add(out, this.shortcut.call(x)));
  }
}

export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly linear: Linear;

  constructor(blocks: number[] = [2, 2, 2, 2], numClasses = 10) {
    super();
    this.conv1 = this.addChild('conv1', new Conv2d(3, 64, 3, 1, 1, true));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(64));
    let inPlanes = 64;
    const stage = (planes: number, count: number, stride: number) => {
      const layers: BasicBlock[] = [];
      for (let i = 0; i < count; i++) {
        layers.push(new BasicBlock(inPlanes, planes, i === 0 ? stride : 1));
        inPlanes = planes;
      }
      return new Sequential(...layers);
    };
    this.layer1 = this.addChild('layer1', stage(64, blocks[0], 1));
    this.layer2 = this.addChild('layer2', stage(128, blocks[1], 2));
    this.layer3 = this.addChild('layer3', stage(256, blocks[2], 2));
    this.layer4 = this.addChild('layer4', stage(512, blocks[3], 2));
    this.linear = this.addChild('linear', new Linear(512, numClasses));
  }

  forward(x: Tensor): Tensor {
    let out = ag.relu(this.bn1.call(this.conv1.call(x)));
    out = this.layer4.call(this.layer3.call(this.layer2.call(this.layer1.call(out))));
    return this.linear.call(ag.flatten(ag.avgPool2d(out, { kernel: 4, stride: 4 })));
  }
}

export function resnet18(numClasses = 10): ResNet {
  return new ResNet([2, 2, 2, 2], numClasses);
}
