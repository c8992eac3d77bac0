/** ONNX attribute checks shared by the conv and pooling importers. */
import { DataError, UnsupportedError } from '../../errors.js';
import type { OnnxImportContext } from '../op-spec.js';

/** A 2-D attribute (strides, kernel_shape) that must be equal in both directions. */
export function square(ctx: OnnxImportContext, name: string, fallback: number | undefined): number {
  const v = ctx.ints(name) ?? (fallback === undefined ? undefined : [fallback, fallback]);
  if (!v) throw new DataError(`${ctx.where}: attribute "${name}" is required.`);
  if (v.length !== 2 || v[0] !== v[1]) throw new UnsupportedError(`${ctx.where}: ${name}=[${v}]; equal values for height and width are supported.`);
  return v[0];
}

export function symmetricPads(ctx: OnnxImportContext): number {
  const pads = ctx.ints('pads') ?? [0, 0, 0, 0];
  if (pads.length !== 4 || pads.some((p) => p !== pads[0])) throw new UnsupportedError(`${ctx.where}: pads=[${pads}]; equal padding on all four sides is supported.`);
  return pads[0];
}

export function noDilation(ctx: OnnxImportContext): void {
  const d = ctx.ints('dilations');
  if (d && d.some((v) => v !== 1)) throw new UnsupportedError(`${ctx.where}: dilations=[${d}]; only dilation 1 is supported.`);
}

export function notAutoPad(ctx: OnnxImportContext): void {
  const mode = ctx.text('auto_pad', 'NOTSET');
  if (mode !== 'NOTSET') throw new UnsupportedError(`${ctx.where}: auto_pad=${mode}; only NOTSET (explicit pads) is supported.`);
}

export function poolAttrs(ctx: OnnxImportContext): { kernel: number; stride: number; padding: number; ceilMode: boolean } {
  const kernel = square(ctx, 'kernel_shape', undefined);
  noDilation(ctx);
  notAutoPad(ctx);
  if (ctx.int('storage_order', 0) !== 0) throw new UnsupportedError(`${ctx.where}: storage_order=1 is not supported.`);
  return { kernel, stride: square(ctx, 'strides', 1), padding: symmetricPads(ctx), ceilMode: ctx.int('ceil_mode', 0) === 1 };
}
