/** Public API of the engine. */
export { IntraFusionError, ArgumentError, UnsupportedError, DataError } from './errors.js';
export { GpuError, requestDevice, adapterOptionsFor, type DeviceInfo } from './tensor/device.js';
export { Runtime, Params, grid1d, poolSizeClass, type KernelSpec, type PoolStats } from './tensor/runtime.js';
export { Tensor, initRuntime, getRuntime, destroyRuntime, empty, fromArray, tidy, sizeOf, type Shape } from './tensor/tensor.js';
export * as autograd from './tensor/autograd.js';
export { parseSafetensors, serializeSafetensors, SafetensorsError, type SafeTensor, type SafeTensorsFile } from './tensor/safetensors.js';
export * as kernels from './kernels/index.js';
export { SGD, type SgdOptions } from './nn/optim.js';

// Models, data, training (Node helpers included: checkpoint files, CIFAR-10 from disk or download).
export { Module, addForwardHook } from './nn/module.js';
export { Conv2d, BatchNorm2d, Linear, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Sequential } from './nn/layers.js';
export { VGG, VGG_CFGS, Dropout, vgg, vgg11_bn, type VggCfg, type VggName, type VggOptions } from './nn/vgg.js';
export { ResNet, BasicBlock, Bottleneck, resnet18, resnet34, resnet50, type ResNetOptions } from './nn/resnet.js';
export { createModel, MODEL_NAMES, STEMS, type ModelName, type ModelOptions, type Stem } from './nn/models.js';
export * as cifar10 from './nn/cifar10.js';
export { loadCifar10, downloadCifar10 } from './nn/cifar10-node.js';
export { modelToSafetensors, loadStateDict, loadSafetensorsBytes, resizeToStateDict, modelFromStateDict, layerWidths, type LayerWidth } from './nn/checkpoint.js';
export { saveCheckpoint, loadCheckpoint, writeFileAtomic } from './nn/checkpoint-node.js';
export { evaluate, complexity, inferenceSpeed } from './nn/metrics.js';
export { train, learningRate, type TrainOptions, type EpochRecord } from './nn/trainer.js';
// The pruner and optimal transport.
export * from './prune/index.js';
// ONNX export and import (protobufjs; browser-safe except the file helpers).
export { exportOnnx, type OnnxExportOptions } from './onnx/export.js';
export { importOnnx, OnnxModel, MIN_OPSET } from './onnx/import.js';
export { saveOnnx, loadOnnx, onnxPathBeside } from './onnx/node.js';
