/** The pruner: dependency groups, BN folding, importance criteria, default pruning and Intra-Fusion. */
export { dependencyGroups, type Group, type Consumer, type Prunable, type GraphOptions } from './graph.js';
export { foldBatchNorms, convBnPairs } from './fold.js';
export { CRITERIA, assertCriterion, groupImportance, groupFeatures, lampScores, chipScores, splitByImportance, type Criterion, type ImportanceOptions } from './importance.js';
export { prune, keptCount, type PruneOptions, type PrunedGroup } from './prune.js';
export { OptimalTransport, type OptimalTransportOptions, type OtMap, type OtProblem } from '../ot/transport.js';
export { emd, OtError, type TransportPlan } from '../ot/emd.js';
export { sinkhornBatch, type SinkhornProblem, type SinkhornOptions, type SinkhornResult } from '../ot/sinkhorn.js';
