/** Public API for Node: everything the browser entry has, plus files, CIFAR-10 download and the trainer. */
export * from './browser.js';
export { loadCifar10, downloadCifar10 } from './data/cifar10-node.js';
export { openDataset, decodeImage, detectDataFormat, DATA_FORMATS, type DataFormat, type OpenDatasetOptions } from './data/node.js';
export { saveCheckpoint, loadCheckpoint, writeFileAtomic } from './nn/checkpoint-node.js';
export { train, learningRate, type TrainOptions, type EpochRecord } from './nn/trainer.js';
export { saveOnnx, loadOnnx, onnxPathBeside } from './onnx/node.js';
