/**
 * im2col / col2im and the NCHW <-> pixel-row transposes of the GEMM path of
 * `conv2d` (groups 1, dilation 1). The column matrix of a batch `[N, C, H, W]`
 * has one row per output pixel (`N * OH * OW` rows, sample-major) and one
 * column per kernel tap (`C * KH * KW`, in the order of a weight
 * `[O, C, KH, KW]` row), zeros where a tap falls in the padding; so
 * `Y = cols * W^T` is the convolution with the output `[N * OH * OW, O]`.
 *
 * These are the references of the `im2col`, `col2im`, `rowsToNchw` and
 * `nchwToRows` members of `OpKernels` (`core/ops/kernels.ts`); `conv2d`
 * uses the scoped kernels when there are any.
 *
 * @module
 */

/** Sizes of one convolution (groups 1). */
export interface ConvGeometry {
  /** Samples. */
  readonly n: number;
  /** Input channels. */
  readonly c: number;
  /** Input height. */
  readonly h: number;
  /** Input width. */
  readonly w: number;
  /** Kernel height. */
  readonly kh: number;
  /** Kernel width. */
  readonly kw: number;
  /** Output height. */
  readonly oh: number;
  /** Output width. */
  readonly ow: number;
  /** Stride in both directions. */
  readonly stride: number;
  /** Zero padding on every side. */
  readonly padding: number;
}

/**
 * The column matrix `[N * OH * OW, C * KH * KW]` of `x` `[N, C, H, W]`.
 *
 * @param x The input batch.
 * @param g Sizes.
 * @returns A new array.
 */
export function im2col(x: Float32Array, g: ConvGeometry): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride, padding } = g;
  const taps = c * kh * kw;
  const cols = new Float32Array(n * oh * ow * taps);
  if (padding === 0) return im2colUnpadded(x, g, cols);
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

/** {@link im2col} without padding: every tap is inside the input, no bounds checks. */
function im2colUnpadded(
  x: Float32Array,
  g: ConvGeometry,
  cols: Float32Array,
): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride } = g;
  let q = 0;
  for (let s = 0; s < n; s++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let ch = 0; ch < c; ch++) {
          let row = ((s * c + ch) * h + oy * stride) * w + ox * stride;
          for (let ky = 0; ky < kh; ky++, row += w) {
            for (let kx = 0; kx < kw; kx++) cols[q++] = x[row + kx];
          }
        }
      }
    }
  }
  return cols;
}

/**
 * The adjoint of {@link im2col}: sums every column-matrix entry back into
 * the input pixel it was read from (padding taps are dropped).
 *
 * @param cols `[N * OH * OW, C * KH * KW]`.
 * @param g Sizes.
 * @returns A new `[N, C, H, W]` array.
 */
export function col2im(cols: Float32Array, g: ConvGeometry): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride, padding } = g;
  const taps = c * kh * kw;
  const x = new Float32Array(n * c * h * w);
  if (padding === 0) return col2imUnpadded(cols, g, x);
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

/** {@link col2im} without padding: every tap is inside the input, no bounds checks. */
function col2imUnpadded(
  cols: Float32Array,
  g: ConvGeometry,
  x: Float32Array,
): Float32Array {
  const { n, c, h, w, kh, kw, oh, ow, stride } = g;
  let q = 0;
  for (let s = 0; s < n; s++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let ch = 0; ch < c; ch++) {
          let row = ((s * c + ch) * h + oy * stride) * w + ox * stride;
          for (let ky = 0; ky < kh; ky++, row += w) {
            for (let kx = 0; kx < kw; kx++) x[row + kx] += cols[q++];
          }
        }
      }
    }
  }
  return x;
}

/**
 * `[N, P, O]` (pixel rows) to `[N, O, P]` (NCHW), plus an optional bias per `O`.
 *
 * @param rows `[N * P, O]`.
 * @param n Samples.
 * @param p Pixels per sample.
 * @param o Channels.
 * @param bias Added to every pixel of channel `o` (optional).
 * @returns A new `[N, O, P]` array.
 */
export function rowsToNchw(
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

/**
 * `[N, O, P]` (NCHW) to `[N, P, O]` (pixel rows).
 *
 * @param y `[N, O, P]`.
 * @param n Samples.
 * @param p Pixels per sample.
 * @param o Channels.
 * @returns A new `[N * P, O]` array.
 */
export function nchwToRows(
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
