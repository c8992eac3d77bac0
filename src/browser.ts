/**
 * The browser-safe public API: the engine, models, pruner, optimal transport and ONNX in/out, with
 * nothing that imports a Node built-in (no file system, no download, no per-epoch checkpoint trainer).
 * The package's "browser" export. The Node entry (`index.ts`) re-exports all of this plus the
 * file-based helpers.
 */
export { IntraFusionError, ArgumentError, UnsupportedError, DataError } from './errors.js';
export { GpuError, requestDevice, adapterOptionsFor, type DeviceInfo } from './tensor/device.js';
export { Runtime, type PoolStats } from './tensor/runtime.js';
export { Tensor, initRuntime, getRuntime, destroyRuntime, empty, fromArray, tidy, sizeOf, type Shape, type GradNode } from './tensor/tensor.js';
export * as autograd from './tensor/autograd.js';
export { parseSafetensors, serializeSafetensors, SafetensorsError, type SafeTensor, type SafeTensorsFile, type DType, type TensorToWrite } from './tensor/safetensors.js';
export { SGD, type SgdOptions } from './nn/optim.js';

export { Module, addForwardHook, type ForwardHook } from './nn/module.js';
export {
  Conv2d, BatchNorm2d, Linear, ReLU, ReLU6, Hardtanh, Hardsigmoid, Hardswish, Sigmoid, SiLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Sequential,
  ChannelSlice, setFusedInference,
} from './nn/layers.js';
export { VGG, VGG_CFGS, Dropout, vgg, vgg11_bn, type VggCfg, type VggName, type VggOptions } from './nn/vgg.js';
export { ResNet, BasicBlock, Bottleneck, resnet18, resnet34, resnet50, type ResNetOptions } from './nn/resnet.js';
export { createModel, MODEL_NAMES, STEMS, type ModelName, type ModelOptions, type Stem } from './nn/models.js';
export * as cifar10 from './data/cifar10.js';
export * from './data/index.js';
export { modelToSafetensors, loadStateDict, loadSafetensorsBytes, resizeToStateDict, modelFromStateDict, layerWidths, type LayerWidth, type LoadOptions } from './nn/checkpoint.js';
export { evaluate, evaluateLogits, keepInputs, complexity, inferenceSpeed, type EvalResult, type EvalOptions, type KeptInputs, type Complexity, type Speed, type LogitsFn } from './nn/metrics.js';
// The op table (open to registration), the pruner and optimal transport.
export * from './graph/index.js';
export * from './prune/index.js';
// ONNX export and import (protobufjs).
export { exportOnnx, type OnnxExportOptions } from './onnx/export.js';
export { importOnnx, OnnxModel, MIN_OPSET, type OnnxImportOptions } from './onnx/import.js';
// Types the exports above refer to.
export type { OtSolver, Probability } from './ot/transport.js';
export type { ImportanceData } from './prune/calibration.js';
export type { ImageFolderOptions } from './data/imagefolder.js';
export type { KernelSpec } from './tensor/runtime.js';
export type { Conv2dGeometry } from './kernels/gemm.js';
export type { BatchNormState, PoolGeometry } from './kernels/norm_pool_loss.js';
