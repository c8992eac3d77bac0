/**
 * Error classes, one per kind of problem, so callers (and the CLI) can tell a user's mistake from a
 * broken GPU. Every class extends `IntraFusionError`; the CLI prints a known error's message on one line
 * and exits with code 2, and prints the stack of anything else (a bug) with code 1.
 *
 *   ArgumentError     a bad argument, option, shape or state of a call (the caller can fix it)
 *   UnsupportedError  a layer, op or attribute outside what this library handles (names the layer or node)
 *   DataError         a data set, checkpoint or file that is missing, malformed or does not fit
 *   GpuError          the WebGPU device: no adapter, device lost, a kernel that failed on the GPU
 *   DependencyError   an optional package that the requested feature needs is not installed (says how to)
 *   (OtError, SafetensorsError and UsageError are narrower classes of the same family)
 */
export class IntraFusionError extends Error {
  override name = 'IntraFusionError';
}

/** A bad argument, option, shape or state of a call: the caller can fix it. */
export class ArgumentError extends IntraFusionError {
  override name = 'ArgumentError';
}

/** A layer, op or attribute outside what this library handles; the message names it. */
export class UnsupportedError extends IntraFusionError {
  override name = 'UnsupportedError';
}

/** A data set, checkpoint or file that is missing, malformed or does not fit. */
export class DataError extends IntraFusionError {
  override name = 'DataError';
}

/** The WebGPU device failed: no adapter, device lost, or a kernel that failed on the GPU. */
export class GpuError extends IntraFusionError {
  override name = 'GpuError';
}

/** An optional package that the requested feature needs is not installed; the message says how to install it. */
export class DependencyError extends IntraFusionError {
  override name = 'DependencyError';
}
