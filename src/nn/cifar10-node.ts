/** Moved to src/data/cifar10-node.ts; this path keeps working. */
export * from '../data/cifar10-node.js';
