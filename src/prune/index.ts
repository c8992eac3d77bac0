/** The pruner: dependency groups, BN folding, importance criteria, default pruning and Intra-Fusion. */
export { dependencyGroups, type Group, type Consumer, type Prunable, type GraphOptions, type ExampleInput } from './graph.js';
export { layerKind, OP_FLOWS, type LayerKind, type ChannelAxis, type ChannelMap, type OpFlow } from './registry.js';
export { foldBatchNorms, convBnPairs } from './fold.js';
export { CRITERIA, assertCriterion, groupImportance, groupFeatures, lampScores, chipScores, splitByImportance, type Criterion, type ImportanceOptions } from './importance.js';
export { foldingMaps, type FoldingOptions, type FoldingMaps } from './folding.js';
export { prune, keptCount, roundKept, type PruneOptions, type PrunedGroup, type Fusion } from './prune.js';
export { OptimalTransport, type OptimalTransportOptions, type OtMap, type OtProblem } from '../ot/transport.js';
export { emd, OtError, type TransportPlan } from '../ot/emd.js';
export { sinkhornBatch, type SinkhornProblem, type SinkhornOptions, type SinkhornResult } from '../ot/sinkhorn.js';
