/**
 * Pooling: max-pool and global average pool (NCHW). Both run the kernels of
 * the enclosing `withKernels` scope when it has them, else the references
 * below.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { convOutputSize } from "./conv2d.ts";
import { currentKernels, type PoolGeometry } from "./kernels.ts";

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
 * import { maxPool2d, Tensor } from "@bbits/core";
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
  const { n, c, oh, ow } = geometry;
  const kernels = currentKernels();
  const forward = kernels?.maxPool2d ?? maxPool2dReference;
  const backward = kernels?.maxPool2dBackward ?? maxPool2dBackwardReference;
  const { y, argmax } = forward(tensorStorage(x), geometry);
  return recordOp(
    Tensor.adopt(y, [n, c, oh, ow]),
    [x],
    (g) => [backward(g, argmax, geometry)],
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

/** The reference of `maxPool2d`'s forward kernel (`OpKernels.maxPool2d`). */
export function maxPool2dReference(
  xs: Float32Array,
  geometry: PoolGeometry,
): { y: Float32Array; argmax: Int32Array } {
  const { n, c, h, w, oh, ow, kernel, stride, padding } = geometry;
  const y = new Float32Array(n * c * oh * ow);
  const argmax = new Int32Array(y.length);
  for (let plane = 0; plane < n * c; plane++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let best = -Infinity;
        let at = -1;
        for (let ky = 0; ky < kernel; ky++) {
          const iy = oy * stride - padding + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kernel; kx++) {
            const ix = ox * stride - padding + kx;
            if (ix < 0 || ix >= w) continue;
            const i = (plane * h + iy) * w + ix;
            if (xs[i] > best || at < 0) {
              best = xs[i];
              at = i;
            }
          }
        }
        const o = (plane * oh + oy) * ow + ox;
        y[o] = best;
        argmax[o] = at;
      }
    }
  }
  return { y, argmax };
}

/** The reference of `maxPool2d`'s backward kernel (`OpKernels.maxPool2dBackward`). */
export function maxPool2dBackwardReference(
  g: Float32Array,
  argmax: Int32Array,
  geometry: PoolGeometry,
): Float32Array {
  const { n, c, h, w } = geometry;
  const dx = new Float32Array(n * c * h * w);
  for (let o = 0; o < g.length; o++) dx[argmax[o]] += g[o];
  return dx;
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
 * import { globalAvgPool, Tensor } from "@bbits/core";
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
  const kernels = currentKernels();
  const forward = kernels?.globalAvgPool ?? globalAvgPoolReference;
  const backward = kernels?.globalAvgPoolBackward ??
    globalAvgPoolBackwardReference;
  const y = forward(tensorStorage(x), n * c, area);
  return recordOp(
    Tensor.adopt(y, [n, c]),
    [x],
    (g) => [backward(g, n * c, area)],
  );
}

/** The reference of `globalAvgPool`'s forward kernel (`OpKernels.globalAvgPool`). */
export function globalAvgPoolReference(
  xs: Float32Array,
  planes: number,
  area: number,
): Float32Array {
  const y = new Float32Array(planes);
  for (let p = 0; p < planes; p++) {
    let s = 0;
    for (let i = 0; i < area; i++) s += xs[p * area + i];
    y[p] = s / area;
  }
  return y;
}

/** The reference of `globalAvgPool`'s backward kernel (`OpKernels.globalAvgPoolBackward`). */
export function globalAvgPoolBackwardReference(
  g: Float32Array,
  planes: number,
  area: number,
): Float32Array {
  const dx = new Float32Array(planes * area);
  for (let p = 0; p < planes; p++) {
    dx.fill(g[p] / area, p * area, (p + 1) * area);
  }
  return dx;
}
