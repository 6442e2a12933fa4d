/**
 * Reference kernels of the convolution family: the direct loop (any stride,
 * padding and groups), forward and backward, with float32 accumulation in
 * (sample, output channel, input channel, tap, pixel) order; and the plain
 * twins of the WASM device's GEMM-path pieces (im2col, col2im and the
 * NCHW <-> pixel-row transposes), which its tests compare against.
 *
 * The column matrix of a batch `[N, C, H, W]` has one row per output pixel
 * (`N * OH * OW` rows, sample-major) and one column per kernel tap
 * (`C * KH * KW`, in the order of a weight `[O, C, KH, KW]` row), zeros where
 * a tap falls in the padding; so `Y = cols * W^T` is the convolution with
 * the output `[N * OH * OW, O]`.
 *
 * @module
 */

import type { ConvGeometry } from "../kernels.ts";

/** Visits every (output, kernel tap, input) triple once; `body` gets flat indices. */
function visit(
  g: ConvGeometry,
  body: (yi: number, wi: number, xi: number) => void,
): void {
  const { n, c, h, w, o, kh, kw, oh, ow, stride, padding, groups } = g;
  const og = o / groups;
  const cg = c / groups;
  for (let s = 0; s < n; s++) {
    for (let oc = 0; oc < o; oc++) {
      const grp = Math.floor(oc / og);
      for (let ic = 0; ic < cg; ic++) {
        const xc = (s * c + grp * cg + ic) * h;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const wi = ((oc * cg + ic) * kh + ky) * kw + kx;
            for (let oy = 0; oy < oh; oy++) {
              const iy = oy * stride - padding + ky;
              if (iy < 0 || iy >= h) continue;
              for (let ox = 0; ox < ow; ox++) {
                const ix = ox * stride - padding + kx;
                if (ix < 0 || ix >= w) continue;
                body(
                  ((s * o + oc) * oh + oy) * ow + ox,
                  wi,
                  (xc + iy) * w + ix,
                );
              }
            }
          }
        }
      }
    }
  }
}

/** The direct convolution `[N, O, OH, OW]`, bias added last. */
export function conv2dReference(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  g: ConvGeometry,
): Float32Array {
  const y = new Float32Array(g.n * g.o * g.oh * g.ow);
  visit(g, (yi, wi, xi) => (y[yi] += w[wi] * x[xi]));
  if (bias) {
    const area = g.oh * g.ow;
    for (let s = 0; s < g.n; s++) {
      for (let oc = 0; oc < g.o; oc++) {
        const base = (s * g.o + oc) * area;
        for (let p = 0; p < area; p++) y[base + p] += bias[oc];
      }
    }
  }
  return y;
}

/** The direct convolution's gradients (see `Kernels.conv2dBackward`). */
export function conv2dBackwardReference(
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  g: ConvGeometry,
  needInput: boolean,
  needBias: boolean,
): { dx: Float32Array | null; dw: Float32Array; db: Float32Array | null } {
  const dx = needInput ? new Float32Array(x.length) : null;
  const dw = new Float32Array(w.length);
  if (dx) {
    visit(g, (yi, wi, xi) => {
      dx[xi] += w[wi] * dy[yi];
      dw[wi] += x[xi] * dy[yi];
    });
  } else {
    visit(g, (yi, wi, xi) => (dw[wi] += x[xi] * dy[yi]));
  }
  let db: Float32Array | null = null;
  if (needBias) {
    db = new Float32Array(g.o);
    const area = g.oh * g.ow;
    for (let s = 0; s < g.n; s++) {
      for (let oc = 0; oc < g.o; oc++) {
        const base = (s * g.o + oc) * area;
        for (let p = 0; p < area; p++) db[oc] += dy[base + p];
      }
    }
  }
  return { dx, dw, db };
}

/**
 * The column matrix `[N * OH * OW, C * KH * KW]` of `x` `[N, C, H, W]`
 * (groups 1).
 */
export function im2colReference(
  x: Float32Array,
  g: ConvGeometry,
): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride, padding } = g;
  const taps = c * kh * kw;
  const cols = new Float32Array(n * oh * ow * taps);
  let r = 0;
  for (let s = 0; s < n; s++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++, r += taps) {
        let q = r;
        const x0 = ox * stride - padding;
        for (let ch = 0; ch < c; ch++) {
          const plane = (s * c + ch) * h;
          for (let ky = 0; ky < kh; ky++, q += kw) {
            const iy = oy * stride - padding + ky;
            if (iy < 0 || iy >= h) continue; // stays zero
            const row = (plane + iy) * w;
            for (let kx = 0; kx < kw; kx++) {
              const ix = x0 + kx;
              if (ix >= 0 && ix < w) cols[q + kx] = x[row + ix];
            }
          }
        }
      }
    }
  }
  return cols;
}

/**
 * The adjoint of {@link im2colReference}: every column-matrix entry summed
 * back into the input pixel it was read from (padding taps dropped).
 */
export function col2imReference(
  cols: Float32Array,
  g: ConvGeometry,
): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride, padding } = g;
  const taps = c * kh * kw;
  const x = new Float32Array(n * c * h * w);
  let r = 0;
  for (let s = 0; s < n; s++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++, r += taps) {
        let q = r;
        const x0 = ox * stride - padding;
        for (let ch = 0; ch < c; ch++) {
          const plane = (s * c + ch) * h;
          for (let ky = 0; ky < kh; ky++, q += kw) {
            const iy = oy * stride - padding + ky;
            if (iy < 0 || iy >= h) continue;
            const row = (plane + iy) * w;
            for (let kx = 0; kx < kw; kx++) {
              const ix = x0 + kx;
              if (ix >= 0 && ix < w) x[row + ix] += cols[q + kx];
            }
          }
        }
      }
    }
  }
  return x;
}

/** `[N, P, O]` (pixel rows) to `[N, O, P]` (NCHW), plus an optional bias per `O`. */
export function rowsToNchwReference(
  rows: Float32Array,
  n: number,
  p: number,
  o: number,
  bias: Float32Array | null,
): Float32Array {
  const y = new Float32Array(n * o * p);
  for (let s = 0; s < n; s++) {
    for (let oc = 0; oc < o; oc++) {
      const b = bias ? bias[oc] : 0;
      const dst = (s * o + oc) * p;
      let src = s * p * o + oc;
      for (let q = 0; q < p; q++, src += o) y[dst + q] = rows[src] + b;
    }
  }
  return y;
}

/** `[N, O, P]` (NCHW) to `[N, P, O]` (pixel rows). */
export function nchwToRowsReference(
  y: Float32Array,
  n: number,
  p: number,
  o: number,
): Float32Array {
  const rows = new Float32Array(n * p * o);
  for (let s = 0; s < n; s++) {
    for (let oc = 0; oc < o; oc++) {
      const src = (s * o + oc) * p;
      let dst = s * p * o + oc;
      for (let q = 0; q < p; q++, dst += o) rows[dst] = y[src + q];
    }
  }
  return rows;
}
