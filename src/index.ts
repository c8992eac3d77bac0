/** Public API for Node: everything the browser entry has, plus files, data sets, the trainer and onnxruntime evaluation. */
export * from './browser.js';
export { loadCifar10, downloadCifar10, type Cifar10, type LoadCifarOptions } from './data/cifar10-node.js';
export { openDataset, decodeImage, detectDataFormat, DATA_FORMATS, type DataFormat, type OpenDatasetOptions, type OpenedDataset } from './data/node.js';
export { saveCheckpoint, loadCheckpoint, writeFileAtomic } from './nn/checkpoint-node.js';
export { train, learningRate, type TrainOptions, type EpochRecord, type Schedule } from './nn/trainer.js';
export { saveOnnx, loadOnnx, onnxPathBeside } from './onnx/node.js';
export { evaluateOnnxRuntime, onnxRuntimeSession, requireOnnxRuntime, type OnnxRuntimeSession } from './onnx/onnxruntime.js';
