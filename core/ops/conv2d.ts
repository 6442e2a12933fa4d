/**
 * 2-D convolution (NCHW), with stride, zero padding and groups (depthwise
 * when `groups` equals the channel count); dilation 1.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { ConvGeometry } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** Stride in both directions (default 1). */
  readonly stride?: number;
  /** Zero padding on every side (default 0). */
  readonly padding?: number;
  /** Channel groups (default 1); both channel counts must divide by it. */
  readonly groups?: number;
}

/**
 * Output spatial size of a convolution or pooling window.
 *
 * @param size Input size.
 * @param kernel Window size.
 * @param stride Stride.
 * @param padding Padding on each side.
 * @returns `floor((size + 2 padding - kernel) / stride) + 1`.
 *
 * @example
 * ```ts
 * import { convOutputSize } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.equal(convOutputSize(28, 5, 1, 0), 24);
 * ```
 */
export function convOutputSize(
  size: number,
  kernel: number,
  stride: number,
  padding: number,
): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

/**
 * The geometry of a convolution of `x` by `w`, checked.
 *
 * @param x Input shape `[N, C, H, W]`.
 * @param w Kernel shape `[O, C / groups, KH, KW]`.
 * @param options Stride, padding, groups.
 * @returns The geometry.
 * @throws {RangeError} On shapes or options that do not fit.
 */
export function convGeometry(
  x: readonly number[],
  w: readonly number[],
  options: Conv2dOptions = {},
): ConvGeometry {
  const stride = options.stride ?? 1;
  const padding = options.padding ?? 0;
  const groups = options.groups ?? 1;
  if (x.length !== 4 || w.length !== 4) {
    throw new RangeError(
      `conv2d: x [${x.join(", ")}] and w [${
        w.join(", ")
      }] must both be 4-D (NCHW, OIHW)`,
    );
  }
  const [n, c, h, wd] = x;
  const [o, cg, kh, kw] = w;
  if (
    !Number.isInteger(groups) || groups < 1 || c % groups !== 0 ||
    o % groups !== 0 ||
    cg !== c / groups
  ) {
    throw new RangeError(
      `conv2d: ${c} input channels, ${o} output channels and groups ${groups} do not fit w [${
        w.join(", ")
      }]`,
    );
  }
  if (
    !Number.isInteger(stride) || stride < 1 || !Number.isInteger(padding) ||
    padding < 0
  ) {
    throw new RangeError(`conv2d: bad stride ${stride} or padding ${padding}`);
  }
  const oh = convOutputSize(h, kh, stride, padding);
  const ow = convOutputSize(wd, kw, stride, padding);
  if (oh < 1 || ow < 1) {
    throw new RangeError(
      `conv2d: a ${kh}x${kw} kernel does not fit a ${h}x${wd} input`,
    );
  }
  return { n, c, h, w: wd, o, kh, kw, oh, ow, stride, padding, groups };
}

/**
 * A 2-D convolution: `x` `[N, C, H, W]`, `w` `[O, C / groups, KH, KW]`,
 * `b` `[O]`, on the device's `conv2d` / `conv2dBackward` kernels (the
 * reference device runs the direct loop; the WASM device im2col and its
 * GEMM for groups 1).
 *
 * @param x Input batch.
 * @param w Kernel; axis 0 holds the output channels.
 * @param b Bias (optional).
 * @param options Stride, padding, groups.
 * @returns `[N, O, OH, OW]`.
 * @throws {RangeError} On shapes or options that do not fit.
 *
 * @example A 1x1 convolution scales each channel
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { conv2d } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const x = Tensor.from([1, 2, 3, 4], [1, 1, 2, 2]);
 * const y = conv2d(x, Tensor.from([2], [1, 1, 1, 1]));
 * assert.deepEqual([...y.toFloat32Array()], [2, 4, 6, 8]);
 * ```
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  b?: Tensor,
  options: Conv2dOptions = {},
): Tensor {
  const g = convGeometry(x.shape, w.shape, options);
  if (b && (b.shape.length !== 1 || b.shape[0] !== g.o)) {
    throw new RangeError(
      `conv2d: bias has shape [${b.shape.join(", ")}], expected [${g.o}]`,
    );
  }
  const k = x.device.kernels;
  const y = k.conv2d(x, w, b ?? null, g);
  const inputs = b ? [x, w, b] : [x, w];
  return recordOp(y, inputs, (gy, needsGrad) => {
    const { dx, dw, db } = k.conv2dBackward(x, w, gy, g, needsGrad[0], !!b);
    return b ? [dx, dw, db] : [dx, dw];
  });
}
