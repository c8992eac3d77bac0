/** Raw kernel launchers (no autograd). */
export * from './gemm.js';
export * from './elementwise.js';
export * from './norm_pool_loss.js';
export { preprocess } from './preprocess.js';
export * from './concat.js';
