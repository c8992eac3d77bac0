/** Public API of the engine. */
export { GpuError, requestDevice, adapterOptionsFor, type DeviceInfo } from './tensor/device.js';
export { Runtime, Params, grid1d, poolSizeClass, type KernelSpec, type PoolStats } from './tensor/runtime.js';
export { Tensor, initRuntime, getRuntime, destroyRuntime, empty, fromArray, tidy, sizeOf, type Shape } from './tensor/tensor.js';
export * as autograd from './tensor/autograd.js';
export { parseSafetensors, serializeSafetensors, SafetensorsError, type SafeTensor, type SafeTensorsFile } from './tensor/safetensors.js';
export * as kernels from './kernels/index.js';
export { SGD, type SgdOptions } from './nn/optim.js';
