/**
 * Reference kernels of the pooling family: max-pool (with the index of each
 * window's first maximum) and global average pool, forward and backward.
 *
 * @module
 */

import type { PoolGeometry } from "../kernels.ts";

/** Max-pool forward: the maxima and each window's first maximum's flat index. */
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

/** Max-pool backward: `dx[argmax[o]] += dy[o]` in output order, into zeros. */
export function maxPool2dBackwardReference(
  dy: Float32Array,
  argmax: Int32Array,
  geometry: PoolGeometry,
): Float32Array {
  const { n, c, h, w } = geometry;
  const dx = new Float32Array(n * c * h * w);
  for (let o = 0; o < dy.length; o++) dx[argmax[o]] += dy[o];
  return dx;
}

/** Global average pool: each plane's float64 sum over `area`, divided, rounded. */
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

/** Global average pool backward: plane `p` filled with `dy[p] / area`. */
export function globalAvgPoolBackwardReference(
  dy: Float32Array,
  planes: number,
  area: number,
): Float32Array {
  const dx = new Float32Array(planes * area);
  for (let p = 0; p < planes; p++) {
    dx.fill(dy[p] / area, p * area, (p + 1) * area);
  }
  return dx;
}
