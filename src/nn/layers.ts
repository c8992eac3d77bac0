/** The layers the CIFAR-10 models use, with PyTorch's parameter names and default initialisation. */
import * as ag from '../tensor/autograd.js';
import { ArgumentError, UnsupportedError } from '../errors.js';
import { conv2dInference, conv2dOutputSize, convAttributes, type Conv2dGeometry } from '../kernels/gemm.js';
import { batchNormEvalTable } from '../kernels/norm_pool_loss.js';
import { fromArray, tidy, type Tensor } from '../tensor/tensor.js';
import { uniformFanIn } from './init.js';
import { enterModule, hasForwardHooks, isWatched, Module } from './module.js';

/**
 * torch.nn.Conv2d: kernel, stride and dilation a number or [height, width]; padding a number, [height, width]
 * or ONNX's [top, left, bottom, right]; groups dividing both channel counts (depthwise, ResNeXt, ...).
 * The spelled-out geometry is in `kernelShape`, `strides`, `pads`, `dilations` (ONNX's attribute layout).
 */
export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly kernelShape: [number, number];
  readonly strides: [number, number];
  /** [top, left, bottom, right] */
  readonly pads: [number, number, number, number];
  readonly dilations: [number, number];
  constructor(
    // Channel counts change when a pruner shrinks the layer.
    public inChannels: number, public outChannels: number, kernelSize: number | readonly [number, number],
    stride: Conv2dGeometry['stride'] = 1, padding: Conv2dGeometry['padding'] = 0, bias = true,
    /** Channel groups: weight [out, in / groups, kh, kw]; in = out = groups is a depthwise conv (pruning changes all three). */
    public groups = 1,
    dilation: NonNullable<Conv2dGeometry['dilation']> = 1,
  ) {
    super();
    if (!(Number.isInteger(groups) && groups >= 1 && inChannels % groups === 0 && outChannels % groups === 0)) {
      throw new ArgumentError(`Conv2d: groups ${groups} must divide in-channels ${inChannels} and out-channels ${outChannels}.`);
    }
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    if (!(Number.isInteger(kh) && kh >= 1 && Number.isInteger(kw) && kw >= 1)) throw new ArgumentError(`Conv2d: kernel size must be positive integers, got ${kh}x${kw}.`);
    ({ kernelShape: this.kernelShape, strides: this.strides, pads: this.pads, dilations: this.dilations } = convAttributes([kh, kw], { stride, padding, dilation }));
    const fanIn = (inChannels / groups) * kh * kw;
    this.weight = this.addParam('weight', fromArray(uniformFanIn(outChannels * fanIn, fanIn), [outChannels, inChannels / groups, kh, kw]));
    this.bias = bias ? this.addParam('bias', fromArray(uniformFanIn(outChannels, fanIn), [outChannels])) : null;
  }
  /**
   * The geometry as single numbers: kernelSize, stride and padding of a square, symmetric, undilated conv
   * (the common case, and what code written before non-square convs reads). Any other conv throws, so such
   * code fails loudly instead of misreading it; read kernelShape, strides, pads and dilations there.
   */
  private uniform(what: string, values: number[]): number {
    if (values.some((v) => v !== values[0]) || this.dilations.some((d) => d !== 1)) {
      throw new UnsupportedError(`Conv2d ${this.path || '(root)'}: ${what} of a ${this.kernelShape.join('x')} conv with strides [${this.strides}], pads [${this.pads}], dilations [${this.dilations}] is not one number; read kernelShape, strides, pads and dilations.`);
    }
    return values[0];
  }
  get kernelSize(): number {
    return this.uniform('kernelSize', this.kernelShape);
  }
  get stride(): number {
    return this.uniform('stride', this.strides);
  }
  get padding(): number {
    return this.uniform('padding', this.pads);
  }
  /** Gives a bias-free conv a zero bias (BN folding needs one); state_dict order stays weight, bias. */
  ensureBias(): Tensor {
    this.bias ??= this.addParam('bias', fromArray(new Float32Array(this.outChannels), [this.outChannels]));
    return this.bias;
  }
  /** Removes the bias again (after pruning, when the fold's bias has moved into the batch-norm). */
  dropBias(): void {
    if (!this.bias) return;
    this.removeTensor('bias');
    this.bias = null;
  }
  forward(x: Tensor): Tensor {
    return ag.conv2d(x, this.weight, this.bias, { stride: this.strides, padding: this.pads, groups: this.groups, dilation: this.dilations });
  }
}

/** Batch normalisation over channels, with running statistics (PyTorch semantics and names). */
export class BatchNorm2d extends Module {
  weight: Tensor;
  bias: Tensor;
  running_mean: Tensor;
  running_var: Tensor;
  constructor(public numFeatures: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.addParam('weight', fromArray(new Float32Array(numFeatures).fill(1), [numFeatures]));
    this.bias = this.addParam('bias', fromArray(new Float32Array(numFeatures), [numFeatures]));
    this.running_mean = this.addBuffer('running_mean', fromArray(new Float32Array(numFeatures), [numFeatures]));
    this.running_var = this.addBuffer('running_var', fromArray(new Float32Array(numFeatures).fill(1), [numFeatures]));
  }
  /** PyTorch's num_batches_tracked (kept on the CPU; saved as int64). */
  numBatchesTracked = 0;
  forward(x: Tensor): Tensor {
    if (this.training) this.numBatchesTracked++;
    return ag.batchNorm2d(
      x,
      { gamma: this.weight, beta: this.bias, runningMean: this.running_mean, runningVar: this.running_var },
      { training: this.training, eps: this.eps, momentum: this.momentum },
    );
  }
}

/** Fully connected layer y = x W^T + b. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(public inFeatures: number, public outFeatures: number, bias = true) {
    super();
    this.weight = this.addParam('weight', fromArray(uniformFanIn(outFeatures * inFeatures, inFeatures), [outFeatures, inFeatures]));
    this.bias = bias ? this.addParam('bias', fromArray(uniformFanIn(outFeatures, inFeatures), [outFeatures])) : null;
  }
  forward(x: Tensor): Tensor {
    return ag.linear(x.rank === 2 ? x : ag.flatten(x), this.weight, this.bias);
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return ag.relu(x);
  }
}

/** torch.nn.Hardtanh: clamps to [minVal, maxVal]; the gradient is 0 at the bounds (op "clip"). */
export class Hardtanh extends Module {
  constructor(readonly minVal = -1, readonly maxVal = 1) {
    super();
    if (Number.isNaN(minVal) || Number.isNaN(maxVal) || minVal > maxVal) throw new ArgumentError(`Hardtanh: bounds [${minVal}, ${maxVal}] must be numbers with min <= max.`);
  }
  forward(x: Tensor): Tensor {
    return ag.hardtanh(x, this.minVal, this.maxVal);
  }
}

/** torch.nn.ReLU6 = Hardtanh(0, 6) (MobileNet; ONNX Clip(0, 6)). */
export class ReLU6 extends Hardtanh {
  constructor() {
    super(0, 6);
  }
}

/** torch.nn.Hardsigmoid: relu6(x + 3) / 6. `alpha`, `beta` give ONNX HardSigmoid's max(0, min(1, alpha x + beta)). */
export class Hardsigmoid extends Module {
  constructor(readonly alpha = 1 / 6, readonly beta = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return ag.hardSigmoid(x, this.alpha, this.beta);
  }
}

/** torch.nn.Hardswish: x * relu6(x + 3) / 6 (MobileNetV3). */
export class Hardswish extends Module {
  forward(x: Tensor): Tensor {
    return ag.hardSwish(x);
  }
}

/** 1 / (1 + e^-x). */
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return ag.sigmoid(x);
  }
}

/** torch.nn.SiLU (swish): x * sigmoid(x) (EfficientNet). */
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return ag.silu(x);
  }
}

/** torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceilMode) (no dilation; ceil_mode: GoogLeNet, SqueezeNet). */
export class MaxPool2d extends Module {
  constructor(readonly kernelSize: number, readonly stride = kernelSize, readonly padding = 0, readonly ceilMode = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    return ag.maxPool2d(x, { kernel: this.kernelSize, stride: this.stride, padding: this.padding, ceilMode: this.ceilMode });
  }
}

/** torch.nn.AdaptiveAvgPool2d: averages each channel into an outputSize grid (1: global average pooling). */
export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number, number];
  constructor(outputSize: number | [number, number]) {
    super();
    this.outputSize = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
  }
  forward(x: Tensor): Tensor {
    return ag.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** torch.nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad), the same argument order. */
export class AvgPool2d extends Module {
  constructor(readonly kernelSize: number, readonly stride = kernelSize, readonly padding = 0, readonly ceilMode = false, readonly countIncludePad = true) {
    super();
  }
  forward(x: Tensor): Tensor {
    // A 1x1 window with stride 1 is the identity (VGG's trailing AvgPool2d(1, 1)): skip the copy.
    if (this.kernelSize === 1 && this.stride === 1 && this.padding === 0) return x;
    return ag.avgPool2d(x, { kernel: this.kernelSize, stride: this.stride, padding: this.padding, ceilMode: this.ceilMode, countIncludePad: this.countIncludePad });
  }
}

/** [B, ...] to [B, rest]. */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    return ag.flatten(x);
  }
}

/** Children named "0", "1", ... as torch.nn.Sequential. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.addChild(String(i), m));
  }
  forward(x: Tensor): Tensor {
    if (!this.layers.length) return x;
    let h = x;
    const fuse = fusedInference && !this.training && !ag.isRecording() && !hasForwardHooks();
    for (let i = 0; i < this.layers.length; i++) {
      const block = fuse ? convBlockAt(this.layers, i, h) : null;
      if (block) {
        h = block.run(enterModule(this.layers[i], h));
        i += block.length - 1;
      } else {
        h = this.layers[i].call(h);
      }
    }
    return h;
  }
  get length(): number {
    return this.layers.length;
  }
  at(i: number): Module {
    const m = this.layers[i];
    if (!m) throw new ArgumentError(`Sequential ${this.path}: no layer ${i}.`);
    return m;
  }
}

/**
 * Fused inference (eval mode, no autograd recording, no forward hooks): a Conv2d followed in a Sequential
 * by an eval BatchNorm2d, a ReLU and a 2x2 stride-2 max-pool (each optional, in that order) runs as one
 * GEMM dispatch with an epilogue (gemm.wgsl BN_EVAL, RELU, POOL2), instead of one or two dispatches and
 * one activation tensor per layer. The epilogue computes each step as its own kernel does, so the output
 * equals the unfused layers' bit for bit (test/fused.test.ts).
 */
let fusedInference = true;

/** Turns fused inference on or off (default on); returns the previous setting. Tests and benchmarks compare both. */
export function setFusedInference(on: boolean): boolean {
  const was = fusedInference;
  fusedInference = on;
  return was;
}

/** The fusable block starting at layers[i] for input x (exact layer classes only: a subclass may compute otherwise), or null. */
function convBlockAt(layers: Module[], i: number, x: Tensor): { length: number; run: (x: Tensor) => Tensor } | null {
  const conv = layers[i];
  if (conv.constructor !== Conv2d || x.rank !== 4) return null;
  const c = conv as Conv2d;
  if (x.shape[1] !== c.weight.shape[1] * c.groups) return null; // the unfused layer names the mismatch
  // A later layer whose input a tap or resume point watches (src/nn/resume.ts) ends the block before it.
  const next = (j: number) => (j < layers.length && !isWatched(layers[j]) ? layers[j] : null);
  let j = i + 1;
  const bnLayer = next(j);
  const bn = bnLayer instanceof BatchNorm2d && bnLayer.constructor === BatchNorm2d && !bnLayer.training ? (j++, bnLayer) : null;
  const relu = next(j)?.constructor === ReLU ? (j++, true) : false;
  const pool = next(j);
  const oh = conv2dOutputSize(x.shape[2], c.kernelShape[0], c.strides[0], c.pads[0], c.pads[2], c.dilations[0]);
  const ow = conv2dOutputSize(x.shape[3], c.kernelShape[1], c.strides[1], c.pads[1], c.pads[3], c.dilations[1]);
  const pool2 = pool?.constructor === MaxPool2d && (pool as MaxPool2d).kernelSize === 2 && (pool as MaxPool2d).stride === 2
    && (pool as MaxPool2d).padding === 0 && !(pool as MaxPool2d).ceilMode && oh % 2 === 0 && ow % 2 === 0;
  if (pool2) j++;
  if (j === i + 1) return null; // a lone conv: nothing to fuse
  const geometry = { stride: c.strides, padding: c.pads, groups: c.groups, dilation: c.dilations };
  return {
    length: j - i,
    run: (input) => tidy(() => {
      const bnTable = bn ? batchNormEvalTable(c.bias, { gamma: bn.weight, beta: bn.bias, runningMean: bn.running_mean, runningVar: bn.running_var }, bn.eps) : null;
      return conv2dInference(input, c.weight, c.bias, geometry, { bnTable, relu, pool2 });
    }),
  };
}

/**
 * x[:, start:end] (along `axis`, default channels) as a module whose bounds follow pruning: ONNX Slice and
 * Split along channels import as one each. Its bounds are resolved against the input's width at the first
 * run (`resolve`, e.g. ONNX's negative or past-the-end indices, or part i of an equal split); pruning the
 * input's channels then moves them (`keepInputChannels`, called by the pruner through the dependency
 * groups), so the slice still cuts the same channels: a user module computing its split sizes from layer
 * widths does not need one.
 */
export class ChannelSlice extends Module {
  start = 0;
  end = 0;
  /** The input's width along `axis` the bounds index into (0 until the first run). */
  width = 0;
  constructor(
    private resolve: ((width: number) => [number, number]) | null,
    /** A negative axis counts from the end (resolved at the first run). */
    public axis = 1,
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    if (this.axis < 0) this.axis += x.rank;
    const width = x.shape[this.axis];
    if (this.resolve) {
      [this.start, this.end] = this.resolve(width);
      this.resolve = null;
      this.width = width;
    }
    if (width !== this.width) throw new ArgumentError(`${this.path || 'ChannelSlice'}: input width ${width} along axis ${this.axis}, but its bounds [${this.start}, ${this.end}) index into ${this.width}.`);
    const y = ag.slice(x, this.start, this.end, this.axis);
    CHANNEL_SLICES.set(y, this);
    return y;
  }

  /** The input lost channels: `kept` are the surviving ones, as sorted indices into the old width. */
  keepInputChannels(kept: readonly number[]): void {
    const before = (bound: number) => kept.filter((i) => i < bound).length;
    [this.start, this.end, this.width] = [before(this.start), before(this.end), kept.length];
  }
}

/** The ChannelSlice that computed a traced tensor (how the dependency groups find the slices to move). */
const CHANNEL_SLICES = new WeakMap<Tensor, ChannelSlice>();
export const channelSliceOf = (t: Tensor): ChannelSlice | undefined => CHANNEL_SLICES.get(t);
