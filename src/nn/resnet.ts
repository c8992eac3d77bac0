/**
 * ResNet18/34 (BasicBlock) and ResNet50 (Bottleneck), with PyTorch state_dict names, in two styles:
 * - 'cifar' (the reference, kuangliu via OTFusion): a 3x3 stride-1 stem conv + BN + ReLU, no max pool; every
 *   conv has a bias; the projection shortcut (1x1 conv + BN, when the stride or width changes) is `shortcut`;
 *   then avg_pool2d(4) and `linear`. ResNet18: 11,178,762 parameters.
 * - 'imagenet' (torchvision): `conv1` 7x7 stride 2 padding 3 + `bn1` + ReLU + `maxpool` 3x3 stride 2 padding 1;
 *   convs without bias; the projection is `downsample`; `avgpool` = AdaptiveAvgPool2d(1) and `fc`.
 *   ResNet18: 11,689,512 parameters for 1000 classes.
 * Stages have widths 64/128/256/512 and strides 1/2/2/2; a Bottleneck's output is 4x its width, and it strides
 * on its 3x3 conv (torchvision's v1.5).
 */
import { ArgumentError } from '../errors.js';
import * as ag from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential } from './layers.js';
import type { Stem } from './models.js';
import { Module } from './module.js';

/** A block whose output is relu(residual(x) + shortcut(x)); the shortcut is the identity or a projection. */
abstract class ResidualBlock extends Module {
  /** The projection (1x1 conv + BN); for the identity an empty Sequential (CIFAR style) or null (torchvision). */
  shortcut: Sequential | null = null;

  protected abstract residual(x: Tensor): Tensor;

  /**
   * Adds the projection when the block changes stride or width. Call it after the residual layers so the
   * state_dict order is PyTorch's. The CIFAR style keeps the reference's empty `shortcut` Sequential for the
   * identity (it holds no tensors, so no state_dict entries); torchvision has no `downsample` then.
   */
  protected addShortcut(inPlanes: number, outPlanes: number, stride: number, stem: Stem): void {
    const name = stem === 'cifar' ? 'shortcut' : 'downsample';
    if (stride !== 1 || inPlanes !== outPlanes) {
      const conv = new Conv2d(inPlanes, outPlanes, 1, stride, 0, stem === 'cifar');
      this.shortcut = this.addChild(name, new Sequential(conv, new BatchNorm2d(outPlanes)));
    } else if (stem === 'cifar') {
      this.shortcut = this.addChild(name, new Sequential()); // called in forward as the reference does: hooks see it
    }
  }

  forward(x: Tensor): Tensor {
    return ag.relu(ag.add(this.residual(x), this.shortcut ? this.shortcut.call(x) : x));
  }
}

/** Two 3x3 convs; output width = planes. */
export class BasicBlock extends ResidualBlock {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;

  constructor(inPlanes: number, planes: number, stride: number, stem: Stem = 'cifar') {
    super();
    const bias = stem === 'cifar';
    this.conv1 = this.addChild('conv1', new Conv2d(inPlanes, planes, 3, stride, 1, bias));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(planes));
    this.conv2 = this.addChild('conv2', new Conv2d(planes, planes, 3, 1, 1, bias));
    this.bn2 = this.addChild('bn2', new BatchNorm2d(planes));
    this.addShortcut(inPlanes, planes, stride, stem);
  }

  protected residual(x: Tensor): Tensor {
    return this.bn2.call(this.conv2.call(ag.relu(this.bn1.call(this.conv1.call(x)))));
  }
}

/** 1x1 reduce, 3x3 (strided), 1x1 expand; output width = 4 x planes. */
export class Bottleneck extends ResidualBlock {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;

  constructor(inPlanes: number, planes: number, stride: number, stem: Stem = 'cifar') {
    super();
    const bias = stem === 'cifar';
    const out = planes * Bottleneck.expansion;
    this.conv1 = this.addChild('conv1', new Conv2d(inPlanes, planes, 1, 1, 0, bias));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(planes));
    this.conv2 = this.addChild('conv2', new Conv2d(planes, planes, 3, stride, 1, bias));
    this.bn2 = this.addChild('bn2', new BatchNorm2d(planes));
    this.conv3 = this.addChild('conv3', new Conv2d(planes, out, 1, 1, 0, bias));
    this.bn3 = this.addChild('bn3', new BatchNorm2d(out));
    this.addShortcut(inPlanes, out, stride, stem);
  }

  protected residual(x: Tensor): Tensor {
    const h = ag.relu(this.bn2.call(this.conv2.call(ag.relu(this.bn1.call(this.conv1.call(x))))));
    return this.bn3.call(this.conv3.call(h));
  }
}

export interface ResNetOptions {
  /** 'basic' (ResNet18/34) or 'bottleneck' (ResNet50). Default 'basic'. */
  block?: 'basic' | 'bottleneck';
  /** 'cifar' (3x3 stem, no max pool, avg_pool2d(4): 32x32 inputs) or 'imagenet' (torchvision). Default 'cifar'. */
  stem?: Stem;
}

/** The ResNet family (BasicBlock or Bottleneck stages), CIFAR or ImageNet stem. */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  /** 'imagenet' only. */
  readonly maxpool: MaxPool2d | null = null;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  /** 'imagenet' only; the CIFAR style pools 4x4 (the 32x32 input's last feature map) in forward, as the reference. */
  readonly avgpool: AdaptiveAvgPool2d | null = null;
  /** The classifier: `linear` in the CIFAR style, `fc` in torchvision's. */
  readonly head: Linear;

  /** `blocks`: blocks per stage, e.g. [2, 2, 2, 2] for ResNet18, [3, 4, 6, 3] for ResNet34 and ResNet50. */
  constructor(blocks: number[] = [2, 2, 2, 2], numClasses = 10, { block = 'basic', stem = 'cifar' }: ResNetOptions = {}) {
    super();
    if (stem !== 'cifar' && stem !== 'imagenet') throw new ArgumentError(`ResNet: unknown stem "${stem}"; choose cifar or imagenet.`);
    if (block !== 'basic' && block !== 'bottleneck') throw new ArgumentError(`ResNet: unknown block "${block}"; choose basic or bottleneck.`);
    if (blocks.length !== 4 || !blocks.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new ArgumentError(`ResNet: blocks must be four positive integers, got [${blocks.join(', ')}].`);
    }
    const Block = block === 'basic' ? BasicBlock : Bottleneck;
    if (stem === 'cifar') {
      this.conv1 = this.addChild('conv1', new Conv2d(3, 64, 3, 1, 1, true));
      this.bn1 = this.addChild('bn1', new BatchNorm2d(64));
    } else {
      this.conv1 = this.addChild('conv1', new Conv2d(3, 64, 7, 2, 3, false));
      this.bn1 = this.addChild('bn1', new BatchNorm2d(64));
      this.maxpool = this.addChild('maxpool', new MaxPool2d(3, 2, 1));
    }
    let inPlanes = 64;
    const stage = (planes: number, count: number, stride: number) => {
      const layers: ResidualBlock[] = [];
      for (let i = 0; i < count; i++) {
        layers.push(new Block(inPlanes, planes, i === 0 ? stride : 1, stem));
        inPlanes = planes * Block.expansion;
      }
      return new Sequential(...layers);
    };
    this.layer1 = this.addChild('layer1', stage(64, blocks[0], 1));
    this.layer2 = this.addChild('layer2', stage(128, blocks[1], 2));
    this.layer3 = this.addChild('layer3', stage(256, blocks[2], 2));
    this.layer4 = this.addChild('layer4', stage(512, blocks[3], 2));
    if (stem === 'cifar') {
      this.head = this.addChild('linear', new Linear(inPlanes, numClasses));
    } else {
      this.avgpool = this.addChild('avgpool', new AdaptiveAvgPool2d(1));
      this.head = this.addChild('fc', new Linear(inPlanes, numClasses));
    }
  }

  forward(x: Tensor): Tensor {
    let h = ag.relu(this.bn1.call(this.conv1.call(x)));
    if (this.maxpool) h = this.maxpool.call(h);
    h = this.layer4.call(this.layer3.call(this.layer2.call(this.layer1.call(h))));
    h = this.avgpool ? this.avgpool.call(h) : ag.avgPool2d(h, { kernel: 4, stride: 4 });
    return this.head.call(ag.flatten(h));
  }
}

/** ResNet18 (BasicBlock, 2-2-2-2). */
export function resnet18(numClasses = 10, stem: Stem = 'cifar'): ResNet {
  return new ResNet([2, 2, 2, 2], numClasses, { block: 'basic', stem });
}

/** ResNet34 (BasicBlock, 3-4-6-3). */
export function resnet34(numClasses = 10, stem: Stem = 'cifar'): ResNet {
  return new ResNet([3, 4, 6, 3], numClasses, { block: 'basic', stem });
}

/** ResNet50 (Bottleneck, 3-4-6-3). */
export function resnet50(numClasses = 10, stem: Stem = 'cifar'): ResNet {
  return new ResNet([3, 4, 6, 3], numClasses, { block: 'bottleneck', stem });
}
