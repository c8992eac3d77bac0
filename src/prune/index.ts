/**
 * The pruner's public API: dependency groups, layer kinds, BN folding, importance criteria, default pruning,
 * Intra-Fusion and model folding. (The op table is the graph layer's: src/graph/index.ts. Helpers such as
 * keptCount and lampScores stay internal: import them from their modules.)
 */
export { dependencyGroups, type Group, type Consumer, type Slot, type Prunable, type GraphOptions, type ExampleInput } from './groups.js';
export { layerKind, registerLayerKind, mapAxis, type LayerKind, type ChannelAxis, type ChannelMap } from '../nn/kinds.js';
export { foldBatchNorms, convBnPairs } from './bn-fold.js';
export { CRITERIA, groupImportance, type Criterion } from './criteria.js';
export { groupFeatures } from './features.js';
export { chipScores } from './chip.js';
export type { ImportanceOptions, ImportanceData } from './calibration.js';
export { foldingMaps, type FoldingOptions, type FoldingMaps } from './model-folding.js';
export { FUSION_METHODS, fusionMethod, type FusionMethod, type GroupMap, type GroupChoice } from './methods.js';
export { prune, type PruneOptions, type PrunedGroup, type Fusion } from './prune.js';
export { OptimalTransport, type OptimalTransportOptions, type OtMap, type OtProblem } from '../ot/transport.js';
export { emd, OtError, type TransportPlan } from '../ot/emd.js';
export { sinkhornBatch, type SinkhornProblem, type SinkhornOptions, type SinkhornResult } from '../ot/sinkhorn.js';
