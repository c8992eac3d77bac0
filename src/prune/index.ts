/** The pruner: dependency groups, BN folding, importance criteria, default pruning, Intra-Fusion and model folding. */
export { dependencyGroups, type Group, type Consumer, type Slot, type Prunable, type GraphOptions, type ExampleInput } from './groups.js';
export { layerKind, registerLayerKind, mapAxis, type LayerKind, type ChannelAxis, type ChannelMap } from '../nn/kinds.js';
export { opSpec, opSpecs, registerOp, CHANNEL_RULES, type OpSpec, type OpName, type ChannelRule, type OnnxExportContext } from '../graph/ops.js';
export { foldBatchNorms, convBnPairs } from './bn-fold.js';
export { CRITERIA, assertCriterion, groupImportance, lampScores, splitByImportance, type Criterion } from './criteria.js';
export { groupFeatures } from './features.js';
export { chipScores } from './chip.js';
export type { ImportanceOptions, ImportanceData } from './calibration.js';
export { foldingMaps, type FoldingOptions, type FoldingMaps } from './model-folding.js';
export { FUSION_METHODS, fusionMethod, type FusionMethod, type GroupMap, type GroupChoice } from './methods.js';
export { prune, keptCount, roundKept, type PruneOptions, type PrunedGroup, type Fusion } from './prune.js';
export { OptimalTransport, type OptimalTransportOptions, type OtMap, type OtProblem } from '../ot/transport.js';
export { emd, OtError, type TransportPlan } from '../ot/emd.js';
export { sinkhornBatch, type SinkhornProblem, type SinkhornOptions, type SinkhornResult } from '../ot/sinkhorn.js';
