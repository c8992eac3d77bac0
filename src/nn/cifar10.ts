/** Moved to src/data/cifar10.ts (behind the dataset interface); this path keeps working. */
export * from '../data/cifar10.js';
