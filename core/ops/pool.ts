/**
 * Pooling: max-pool and global average pool (NCHW).
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { PoolGeometry } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";
import { convOutputSize } from "./conv2d.ts";

/**
 * Max-pooling over `kernel x kernel` windows (stride defaults to the kernel;
 * padding, if any, never wins the max). The gradient goes to the first
 * maximum of each window.
 *
 * @param x `[N, C, H, W]`.
 * @param kernel Window size.
 * @param stride Stride (default `kernel`).
 * @param padding Implicit `-Infinity` padding on each side (default 0).
 * @returns `[N, C, OH, OW]`.
 * @throws {RangeError} On a non-4-D input or a window larger than the input.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { maxPool2d } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const y = maxPool2d(Tensor.from([1, 5, 3, 2], [1, 1, 2, 2]), 2);
 * assert.deepEqual([...y.toFloat32Array()], [5]);
 * ```
 */
export function maxPool2d(
  x: Tensor,
  kernel: number,
  stride = kernel,
  padding = 0,
): Tensor {
  const geometry = poolGeometry(x.shape, kernel, stride, padding);
  const k = x.device.kernels;
  const { y, argmax } = k.maxPool2d(x, geometry);
  return recordOp(
    y,
    [x],
    (g) => [k.maxPool2dBackward(g, argmax, geometry)],
  );
}

/**
 * The geometry of a max-pool of an `[N, C, H, W]` tensor, checked as
 * {@link maxPool2d} checks it.
 *
 * @param shape The input shape.
 * @param kernel Window size.
 * @param stride Stride.
 * @param padding Padding on each side.
 * @returns The geometry.
 * @throws {RangeError} On a non-4-D shape or a window that does not fit.
 */
export function poolGeometry(
  shape: readonly number[],
  kernel: number,
  stride: number,
  padding: number,
): PoolGeometry {
  if (shape.length !== 4) {
    throw new RangeError(
      `maxPool2d: input must be 4-D (NCHW), got [${shape.join(", ")}]`,
    );
  }
  const [n, c, h, w] = shape;
  const oh = convOutputSize(h, kernel, stride, padding);
  const ow = convOutputSize(w, kernel, stride, padding);
  if (
    !Number.isInteger(kernel) || kernel < 1 || oh < 1 || ow < 1 ||
    padding > kernel / 2
  ) {
    throw new RangeError(
      `maxPool2d: a ${kernel}x${kernel} window does not fit ${h}x${w}`,
    );
  }
  return { n, c, h, w, oh, ow, kernel, stride, padding };
}

/**
 * Global average pooling: the mean of each channel's plane.
 *
 * @param x `[N, C, H, W]`.
 * @returns `[N, C]`.
 * @throws {RangeError} On a non-4-D input.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { globalAvgPool } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...globalAvgPool(Tensor.from([1, 2, 3, 6], [1, 1, 2, 2])).toFloat32Array()], [3]);
 * ```
 */
export function globalAvgPool(x: Tensor): Tensor {
  if (x.shape.length !== 4) {
    throw new RangeError(
      `globalAvgPool: input must be 4-D (NCHW), got [${x.shape.join(", ")}]`,
    );
  }
  const [n, c, h, w] = x.shape;
  const area = h * w;
  const k = x.device.kernels;
  const y = k.globalAvgPool(x, n * c, area).reshape([n, c]);
  return recordOp(
    y,
    [x],
    (g) => [k.globalAvgPoolBackward(g, n * c, area).reshape(x.shape)],
  );
}
