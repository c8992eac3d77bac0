/** Re-exports of the pruner for the tests, plus internals worth testing directly. */
export * from '../src/prune/index.js';
export { symmetricEigenvalues as symmetricEigenvaluesForTest } from '../src/prune/eigen.js';
export { keptCount, roundKept } from '../src/prune/prune.js';
export { lampScores } from '../src/prune/criteria.js';
