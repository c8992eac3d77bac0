/** The traced graph below the pruner and ONNX: op specs, tracing, weight owners and conv-BN pairing. */
export { opSpec, opSpecs, registerOp, CHANNEL_RULES, type OpSpec, type OpName, type ChannelRule, type OnnxExportContext } from './ops.js';
export { exampleShape, weightOwners, topologicalOps, readersOf, traceGraph, traceOps, layerOfOp, type ExampleInput, type TracedGraph } from './trace.js';
export { pairConvBn, convBnPairs, foldedConvValues, type ConvBnPair } from './pairing.js';
