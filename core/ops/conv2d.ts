/**
 * 2-D convolution (NCHW), with stride, zero padding and groups (depthwise
 * when `groups` equals the channel count); dilation 1.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { biasGradReference } from "./dense.ts";
import { currentGemm, type GemmFn } from "./gemm.ts";
import { currentKernels } from "./kernels.ts";
import {
  col2im,
  type ConvGeometry,
  im2col,
  nchwToRows,
  rowsToNchw,
} from "./im2col.ts";

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
 * import { convOutputSize } from "@bbits/core";
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
 * A 2-D convolution: `x` `[N, C, H, W]`, `w` `[O, C / groups, KH, KW]`, `b` `[O]`.
 *
 * Outside a `withGemm` scope it runs the direct loop (the oracle). Inside
 * one, with groups 1, it runs on the scoped GEMM (captured when the op
 * runs, so the VJP uses the same one): the whole batch's im2col matrix
 * `cols` `[N OH OW, C KH KW]`, forward `Y = cols W^T`, input gradient
 * `col2im(dY W)`, weight gradient `dY^T cols`; there im2col, col2im, the
 * layout transposes and the bias gradient run on the kernels of the
 * enclosing `withKernels` scope, if any, or the whole path on its
 * `conv2dGemmForward` / `conv2dGemmBackward` kernels (with their own GEMM)
 * when it has both. Grouped convolutions (groups > 1) always run the
 * direct loop.
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
 * import { conv2d, Tensor } from "@bbits/core";
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
  const stride = options.stride ?? 1;
  const padding = options.padding ?? 0;
  const groups = options.groups ?? 1;
  if (x.shape.length !== 4 || w.shape.length !== 4) {
    throw new RangeError(
      `conv2d: x [${x.shape.join(", ")}] and w [${
        w.shape.join(", ")
      }] must both be 4-D (NCHW, OIHW)`,
    );
  }
  const [n, c, h, wd] = x.shape;
  const [o, cg, kh, kw] = w.shape;
  if (
    !Number.isInteger(groups) || groups < 1 || c % groups !== 0 ||
    o % groups !== 0 ||
    cg !== c / groups
  ) {
    throw new RangeError(
      `conv2d: ${c} input channels, ${o} output channels and groups ${groups} do not fit w [${
        w.shape.join(", ")
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
  if (b && (b.shape.length !== 1 || b.shape[0] !== o)) {
    throw new RangeError(
      `conv2d: bias has shape [${b.shape.join(", ")}], expected [${o}]`,
    );
  }
  const xs = tensorStorage(x);
  const ws = tensorStorage(w);
  const bs = b ? tensorStorage(b) : null;
  const gemm = currentGemm();
  if (gemm !== null && groups === 1) {
    return conv2dGemm(gemm, x, w, b, xs, ws, bs, {
      n,
      c,
      h,
      w: wd,
      kh,
      kw,
      oh,
      ow,
      stride,
      padding,
    }, o);
  }
  const og = o / groups;
  const y = new Float32Array(n * o * oh * ow);
  // Visits every (output, kernel tap, input) triple once; `body` gets flat indices.
  const visit = (body: (yi: number, wi: number, xi: number) => void) => {
    for (let s = 0; s < n; s++) {
      for (let oc = 0; oc < o; oc++) {
        const g = Math.floor(oc / og);
        for (let ic = 0; ic < cg; ic++) {
          const xc = (s * c + g * cg + ic) * h;
          for (let ky = 0; ky < kh; ky++) {
            for (let kx = 0; kx < kw; kx++) {
              const wi = ((oc * cg + ic) * kh + ky) * kw + kx;
              for (let oy = 0; oy < oh; oy++) {
                const iy = oy * stride - padding + ky;
                if (iy < 0 || iy >= h) continue;
                for (let ox = 0; ox < ow; ox++) {
                  const ix = ox * stride - padding + kx;
                  if (ix < 0 || ix >= wd) continue;
                  body(
                    ((s * o + oc) * oh + oy) * ow + ox,
                    wi,
                    (xc + iy) * wd + ix,
                  );
                }
              }
            }
          }
        }
      }
    }
  };
  visit((yi, wi, xi) => (y[yi] += ws[wi] * xs[xi]));
  if (bs) {
    for (let s = 0; s < n; s++) {
      for (let oc = 0; oc < o; oc++) {
        const base = (s * o + oc) * oh * ow;
        for (let p = 0; p < oh * ow; p++) y[base + p] += bs[oc];
      }
    }
  }
  const inputs = b ? [x, w, b] : [x, w];
  return recordOp(Tensor.adopt(y, [n, o, oh, ow]), inputs, (gy) => {
    const dx = new Float32Array(xs.length);
    const dw = new Float32Array(ws.length);
    visit((yi, wi, xi) => {
      dx[xi] += ws[wi] * gy[yi];
      dw[wi] += xs[xi] * gy[yi];
    });
    if (!b) return [dx, dw];
    const db = new Float32Array(o);
    for (let s = 0; s < n; s++) {
      for (let oc = 0; oc < o; oc++) {
        const base = (s * o + oc) * oh * ow;
        for (let p = 0; p < oh * ow; p++) db[oc] += gy[base + p];
      }
    }
    return [dx, dw, db];
  });
}

/** The GEMM path of {@link conv2d} (groups 1); see its documentation. */
function conv2dGemm(
  gemm: GemmFn,
  x: Tensor,
  w: Tensor,
  b: Tensor | undefined,
  xs: Float32Array,
  ws: Float32Array,
  bs: Float32Array | null,
  geometry: ConvGeometry,
  o: number,
): Tensor {
  const { n, oh, ow } = geometry;
  const p = oh * ow;
  const rows = n * p;
  const taps = ws.length / o;
  const kernels = currentKernels();
  const inputs = b ? [x, w, b] : [x, w];
  if (kernels?.conv2dGemmForward && kernels.conv2dGemmBackward) {
    const backward = kernels.conv2dGemmBackward;
    const y = kernels.conv2dGemmForward(xs, ws, bs, geometry);
    return recordOp(
      Tensor.adopt(y, [n, o, oh, ow]),
      inputs,
      (gy, needsGrad) => {
        const { dx, dw, db } = backward(
          xs,
          ws,
          gy,
          geometry,
          needsGrad[0],
          !!b,
        );
        return b ? [dx, dw, db] : [dx, dw];
      },
    );
  }
  const toRows = kernels?.nchwToRows ?? nchwToRows;
  const fromCols = kernels?.col2im ?? col2im;
  const biasGrad = kernels?.biasGrad ?? biasGradReference;
  const cols = (kernels?.im2col ?? im2col)(xs, geometry);
  const yRows = gemm({ m: rows, n: o, k: taps, transB: true }, cols, ws);
  const y = (kernels?.rowsToNchw ?? rowsToNchw)(yRows, n, p, o, bs);
  return recordOp(Tensor.adopt(y, [n, o, oh, ow]), inputs, (gy, needsGrad) => {
    const dyRows = toRows(gy, n, p, o);
    const dx = needsGrad[0]
      ? fromCols(gemm({ m: rows, n: taps, k: o }, dyRows, ws), geometry)
      : null;
    const dw = gemm(
      { m: o, n: taps, k: rows, transA: true },
      dyRows,
      cols,
    );
    return b ? [dx, dw, biasGrad(dyRows, o)] : [dx, dw];
  });
}
