/**
 * The graph layer's public part: the op table (one spec per recorded op: channel rule, whether zero stays
 * zero, ONNX export and import), open to registration. The tracer and conv-BN pairing are internals the
 * pruner and the ONNX drivers import from their modules.
 */
export { opSpec, opSpecs, registerOp, CHANNEL_RULES, type OpSpec, type OpName, type ChannelRule, type OnnxExportContext } from './ops.js';
